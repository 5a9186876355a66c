"""The publish API (MSG-1): partner systems post notices, signed (operation ``messages.publish``);
admins set what each partner may publish. Documented for integrators in docs/open-api.md."""

from __future__ import annotations

from typing import Any

import msgspec

from carehub.identity import Identity
from carehub.identity.patients import Patients
from carehub.messaging import MessageCenter
from carehub.messaging.publishing import MAX_BATCH, OpenMessage, Publishing
from carehub.storage.audit import AuditEntry

from ..errors import ApiError
from ..routing import Answer, RequestContext, RouteDecorator
from .args import client_ip

OP = "messages.publish"


class Recipient(msgspec.Struct, forbid_unknown_fields=True):
    """Exactly one of: a CareHub account, a patient (their own account, or the account that added them), a phone."""

    account_id: str | None = None
    patient_id: str | None = None
    phone: str | None = None


class PublishMessage(msgspec.Struct, forbid_unknown_fields=True):
    kind: str
    to: Recipient
    #: the template's variables for this kind (strings)
    values: dict[str, str]
    #: 1-80 characters [A-Za-z0-9_.:-]; a repeat answers the first answer and sends nothing
    idempotency_key: str
    #: narrow the outside channels (wechat, sms, alipay) to these; [] in-app only; absent: the recipient's choice
    channels: list[str] | None = None


class PublishBatch(msgspec.Struct, forbid_unknown_fields=True):
    messages: list[PublishMessage]


class PublishedView(msgspec.Struct):
    message_id: str
    #: the notice's state when first accepted: in_app (no outside channel), sending, deferred (quiet hours)
    status: str
    #: true: this idempotency key was seen before; this is the first answer and nothing was sent again
    duplicate: bool


class ItemError(msgspec.Struct):
    code: str
    message: str
    retry_after: int | None = None


class BatchItemView(msgspec.Struct, omit_defaults=True):
    """A published message's answer, or ``error`` (then the other fields are absent)."""

    message_id: str | None = None
    status: str | None = None
    duplicate: bool | None = None
    error: ItemError | None = None


class BatchView(msgspec.Struct):
    #: one per message, in the order sent
    results: list[BatchItemView]
    accepted: int
    failed: int


class ChannelStatusView(msgspec.Struct):
    #: app (the in-app inbox and stream), wechat, sms, alipay
    channel: str
    #: delivered, sent, pending, skipped (an earlier channel took it), failed
    status: str
    at: str | None
    #: app only: the recipient opened it
    read: bool | None
    #: outside channels: the provider's delivery report, when one came
    report: str | None


class MessageStatusView(msgspec.Struct):
    message_id: str
    kind: str
    #: in_app, deferred, sending, retrying, sent, dead
    status: str
    reason: str | None
    created_at: str
    channels: list[ChannelStatusView]


class RuleBody(msgspec.Struct, forbid_unknown_fields=True):
    #: kind names, or ["*"] for every kind
    kinds: list[str]
    #: patient, staff
    audiences: list[str]
    per_minute: int


class RuleView(msgspec.Struct):
    partner_id: str
    kinds: list[str]
    audiences: list[str]
    per_minute: int
    updated_at: str | None
    updated_by: str


class PartnerRuleView(msgspec.Struct):
    account_id: str
    login: str
    name: str
    disabled: bool
    #: None: this partner may publish nothing
    rule: RuleView | None


class KindView(msgspec.Struct):
    kind: str
    label: str
    audience: str
    category: str


class RulesView(msgspec.Struct):
    partners: list[PartnerRuleView]
    kinds: list[KindView]
    audiences: list[str]


def _message(m: PublishMessage) -> OpenMessage:
    return OpenMessage(m.kind, m.idempotency_key, dict(m.values), m.to.account_id, m.to.patient_id, m.to.phone,
                       m.channels)


def register(r: RouteDecorator, *, messaging: MessageCenter, identity: Identity, patients: Patients) -> None:
    publishing = Publishing(messaging.notifier, messaging.publishing, identity.accounts, patients.store,
                            identity.keyring)

    def partner_of(ctx: RequestContext) -> str:
        assert ctx.partner is not None
        return ctx.partner.account_id

    @r("POST", "/api/v1/open/messages", summary="Partner: publish a notice to a patient or staff member (signed)",
       permission=None, body=PublishMessage, tag="open", partner_op=OP, response=PublishedView, status=202)
    async def publish(ctx: RequestContext, body: PublishMessage) -> Any:
        return Answer(await publishing.publish(partner_of(ctx), _message(body)), 202)

    @r("POST", "/api/v1/open/messages/batch", summary=f"Partner: publish up to {MAX_BATCH} notices (signed)",
       permission=None, body=PublishBatch, tag="open", partner_op=OP, response=BatchView, status=202)
    async def publish_batch(ctx: RequestContext, body: PublishBatch) -> Any:
        if len(body.messages) > MAX_BATCH:  # before any lookup: the whole batch is refused
            raise ApiError(422, "too_many_messages",
                           f"一次最多发布 {MAX_BATCH} 条 (at most {MAX_BATCH} messages; got {len(body.messages)})")
        results = await publishing.publish_batch(partner_of(ctx), [_message(m) for m in body.messages])
        failed = sum(1 for item in results if "error" in item)
        return Answer({"results": results, "accepted": len(results) - failed, "failed": failed}, 202)

    @r("GET", "/api/v1/open/messages/<message_id>", summary="Partner: a published notice's status per channel (signed)",
       permission=None, tag="open", partner_op=OP, response=MessageStatusView)
    async def message_status(ctx: RequestContext, message_id: str) -> Any:
        return await publishing.status(partner_of(ctx), message_id)

    @r("GET", "/api/v1/admin/publish-rules", summary="What each partner may publish (MSG-1)",
       permission="admin.messaging", tag="admin", response=RulesView)
    async def list_rules(ctx: RequestContext) -> Any:
        return await publishing.rules()

    @r("PUT", "/api/v1/admin/publish-rules/<partner_account_id>",
       summary="Set a partner's publish rule: kinds, audiences, per-minute limit (MSG-1)",
       permission="admin.messaging", body=RuleBody, tag="admin", response=RuleView)
    async def put_rule(ctx: RequestContext, body: RuleBody, partner_account_id: str) -> Any:
        assert ctx.principal is not None
        rule = await publishing.save_rule(partner_account_id, body.kinds, body.audiences, body.per_minute,
                                          by=ctx.principal.account_id)
        await identity.audit.append(AuditEntry(
            action="partner.publish_rule", target=f"account/{partner_account_id}", actor_id=ctx.principal.account_id,
            actor_roles=sorted(ctx.principal.roles), source_ip=client_ip(),
            detail={"kinds": ",".join(rule["kinds"])[:200], "audiences": ",".join(rule["audiences"]),
                    "per_minute": str(rule["per_minute"])}))
        return rule
