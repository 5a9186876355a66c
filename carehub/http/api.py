"""The Quart-Trio application: health, metrics, OpenAPI, sign-in, actor calls, ops, directory."""

from __future__ import annotations

import datetime as dt
import importlib.resources
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
import pyotp
import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from carehub.hub import BadMessage, Caller, HubError, UnknownActorKind
from carehub.identity import (
    STAFF_ROLES,
    AccountLocked,
    AuthFailed,
    NewAccount,
    Principal,
    RateLimited,
    SmsUnavailable,
    may_publish,
)
from carehub.identity.patients import PatientRefused
from carehub.identity.permissions import ALL_PERMISSIONS
from carehub.identity.roles import RoleRefused
from carehub.identity.signatures import SIGNER_ROLES
from carehub.storage.accounts import LoginTaken
from carehub.storage.audit import AuditEntry
from carehub.storage.keyring import DecryptionFailed, IntegrityError, KeyRingError
from carehub.storage.migrate import latest_version, schema_version

from .context import Services
from .errors import ApiError, from_hub
from .openapi import openapi_document
from .routing import RequestContext, Router, error_response, json_response
from .ws import CLOSE_REVOKED

log = logging.getLogger("carehub.http")


class Login(msgspec.Struct, forbid_unknown_fields=True):
    login: str
    password: str
    #: staff: the 6-digit code of their authenticator app (TOTP)
    totp: str | None = None


class SmsCodeRequest(msgspec.Struct, forbid_unknown_fields=True):
    phone: str


class SmsLogin(msgspec.Struct, forbid_unknown_fields=True):
    phone: str
    code: str


class Call(msgspec.Struct, forbid_unknown_fields=True):
    to: str
    type: str
    body: dict[str, Any] = msgspec.field(default_factory=dict)


class PublishBody(msgspec.Struct, forbid_unknown_fields=True):
    topic: str
    type: str
    body: dict[str, Any] = msgspec.field(default_factory=dict)


class NewAccountBody(msgspec.Struct, forbid_unknown_fields=True):
    login: str
    display_name: str
    roles: list[str]
    password: str | None = None
    phone: str | None = None
    #: patients the hospital already verified at its counter (imported from the HIS)
    real_name: str | None = None
    id_number: str | None = None


class AddPatient(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    id_number: str
    relation: str
    guardian_consent: bool = False


class PatientUpdate(msgspec.Struct, forbid_unknown_fields=True):
    relation: str


class ConsentAnswer(msgspec.Struct, forbid_unknown_fields=True):
    patient_id: str
    requester: str
    grant: bool


class ReviewDecision(msgspec.Struct, forbid_unknown_fields=True):
    approve: bool
    reason: str | None = None


class BreakGlass(msgspec.Struct, forbid_unknown_fields=True):
    reason: str


class RoleBody(msgspec.Struct, forbid_unknown_fields=True):
    permissions: list[str]
    menus: list[str] = msgspec.field(default_factory=list)
    description: str = ""


class AccountRoles(msgspec.Struct, forbid_unknown_fields=True):
    roles: list[str]


class NewPartnerKey(msgspec.Struct, forbid_unknown_fields=True):
    operations: list[str]


class NewAccounts(msgspec.Struct, forbid_unknown_fields=True):
    accounts: list[NewAccountBody]


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "bad_request", f"query parameter {name!r} must be a whole number") from None
    if not low <= value <= high:
        raise ApiError(400, "bad_request", f"query parameter {name!r} must be between {low} and {high}")
    return value


class HubCollector(Collector):
    def __init__(self, services: Services) -> None:
        self.s = services

    def collect(self) -> Any:
        snap = self.s.hub.snapshot()
        actors = GaugeMetricFamily("carehub_actors", "Live actor activations", labels=["kind"])
        for kind in sorted(self.s.hub.behaviours):
            actors.add_metric([kind], snap["actors_by_kind"].get(kind, 0))
        yield actors
        yield GaugeMetricFamily(
            "carehub_mailbox_depth", "Messages waiting in all mailboxes", value=snap["mailbox_depth"]
        )
        yield GaugeMetricFamily(
            "carehub_mailbox_oldest_seconds", "Age of the oldest waiting message", value=snap["oldest_waiting_seconds"]
        )
        yield CounterMetricFamily("carehub_messages", "Messages handled by actors", value=snap["messages_total"])
        yield GaugeMetricFamily(
            "carehub_messages_per_second", "Messages handled per second (5 s window)", value=snap["messages_per_second"]
        )
        errors = CounterMetricFamily("carehub_errors", "Errors answered to senders", labels=["code"])
        for code, n in sorted(snap["errors_by_code"].items()):
            errors.add_metric([code], n)
        yield errors
        yield CounterMetricFamily("carehub_actor_crashes", "Handler crashes", value=snap["crashes_total"])
        yield GaugeMetricFamily("carehub_actors_quarantined", "Quarantined actors", value=len(snap["quarantined"]))
        yield GaugeMetricFamily("carehub_connections", "Open WebSocket connections", value=len(self.s.push.sessions))
        yield GaugeMetricFamily(
            "carehub_reminders_due", "Stored reminders and tells due now", value=self.s.extra.get("reminders_due", 0)
        )
        yield CounterMetricFamily("carehub_reminders_fired", "Reminders fired", value=snap["reminders_fired"])
        yield CounterMetricFamily("carehub_reminders_late", "Reminders fired late", value=snap["reminders_late"])
        yield CounterMetricFamily(
            "carehub_ws_bad_frames", "Malformed or refused WebSocket frames", value=self.s.stats.bad_frames
        )


def create_app(services: Services) -> tuple[QuartTrio, Router]:
    app = QuartTrio("carehub.http", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True
    router = Router(app, services)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(services))
    ProcessCollector(registry=registry)  # process_resident_memory_bytes etc.
    r = router.route

    @app.errorhandler(HTTPException)
    async def http_error(err: HTTPException) -> Response:
        code = (err.name or "error").lower().replace(" ", "_")
        status = err.code or 400
        return error_response(ApiError(status, code, err.description or err.name or "request failed"))

    @app.errorhandler(Exception)
    async def unexpected(err: Exception) -> Response:
        log.exception("unexpected error")
        return error_response(ApiError(500, "internal_error", "服务器内部错误 (logged for the operators)"))

    # ---- health and metadata ------------------------------------------------------------------

    @r("GET", "/healthz", summary="The process is up", permission=None, tag="ops")
    async def healthz(ctx: RequestContext) -> Any:
        return {"status": "ok"}

    @r("GET", "/readyz", summary="Database reachable and migrations applied", permission=None, tag="ops")
    async def readyz(ctx: RequestContext) -> Any:
        try:
            with trio.fail_after(2):
                version = await schema_version(ctx.services.db)
        except Exception as err:  # any failure to reach the database means: not ready
            reason = "timed out" if isinstance(err, trio.TooSlowError) else f"{type(err).__name__}: {err}"
            raise ApiError(503, "database_unavailable", f"数据库不可用 (database unreachable: {reason})") from None
        if version < latest_version():
            raise ApiError(503, "migrations_pending", f"schema version {version}, expected {latest_version()}")
        return {"status": "ready", "schema_version": version}

    @r("GET", "/metrics", summary="Prometheus metrics", permission=None, tag="ops", content_type="text/plain")
    async def metrics(ctx: RequestContext) -> Any:
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

    @r("GET", "/openapi.json", summary="This document", permission=None, tag="meta")
    async def openapi(ctx: RequestContext) -> Any:
        return openapi_document(router.specs)

    # ---- sign-in ------------------------------------------------------------------------------

    @r("POST", "/api/v1/auth/login", summary="Sign in with login and password", permission=None, body=Login,
       tag="auth")
    async def login(ctx: RequestContext, body: Login) -> Any:
        if not body.login or not body.password or len(body.login) > 100 or len(body.password) > 200:
            raise ApiError(422, "invalid", "login and password are required (login <= 100, password <= 200 chars)")
        if body.totp is not None and len(body.totp) > 10:
            raise ApiError(422, "invalid", "totp is the 6-digit code of an authenticator app")
        with sign_in_errors():
            token, principal = await ctx.services.identity.login(
                body.login, body.password, totp=body.totp, ip=client_ip()
            )
        return session_body(token, principal)

    @r("POST", "/api/v1/auth/sms-code", summary="Send a sign-in code by SMS (patients)", permission=None,
       body=SmsCodeRequest, tag="auth")
    async def sms_code(ctx: RequestContext, body: SmsCodeRequest) -> Any:
        with sign_in_errors():
            seconds = await ctx.services.identity.request_sms_code(body.phone, ip=client_ip())
        return {"sent": True, "expires_in": seconds}

    @r("POST", "/api/v1/auth/sms-login", summary="Sign in with phone and SMS code (patients)", permission=None,
       body=SmsLogin, tag="auth")
    async def sms_login(ctx: RequestContext, body: SmsLogin) -> Any:
        if not body.code.strip().isdigit() or len(body.code.strip()) != 6:
            raise ApiError(422, "invalid", "验证码为 6 位数字 (the code has 6 digits)")
        with sign_in_errors():
            token, principal = await ctx.services.identity.login_sms(body.phone, body.code, ip=client_ip())
        return session_body(token, principal)

    @r("POST", "/api/v1/auth/logout", summary="End this session (closes its WebSockets)",
       permission="account.self", tag="auth")
    async def logout(ctx: RequestContext) -> Any:
        assert ctx.principal is not None
        await ctx.services.identity.logout(ctx.principal, ip=client_ip())
        close_sessions(ctx.services, {ctx.principal.token_hash or ""}, "已退出登录 (session ended)")
        return {"status": "signed_out"}

    @r("GET", "/api/v1/me", summary="The signed-in account", permission="account.self", tag="auth")
    async def me(ctx: RequestContext) -> Any:
        p = ctx.principal
        assert p is not None
        first, last = await ctx.services.store.stream_bounds(p.account_id)
        return {
            "id": p.account_id,
            "login": p.login,
            "name": p.display_name,
            "roles": sorted(p.roles),
            "permissions": sorted(p.permissions),
            "stream": {"first_seq": first, "last_seq": last},
        }

    @r("GET", "/api/v1/me/menus", summary="The menus my roles see", permission="account.self", tag="auth")
    async def my_menus(ctx: RequestContext) -> Any:
        assert ctx.principal is not None and ctx.services.identity.roles is not None
        return {"menus": ctx.services.identity.roles.menus_for(ctx.principal.roles)}

    @r("GET", "/api/v1/me/stream", summary="Read my delivery stream after a sequence number",
       permission="account.self", tag="auth", query=("after", "limit"))
    async def my_stream(ctx: RequestContext) -> Any:
        assert ctx.principal is not None
        after = _int_arg("after", 0, 0, 2**62)
        limit = _int_arg("limit", 100, 1, 500)
        items = await ctx.services.store.read_stream(ctx.principal.account_id, after, limit)
        return {
            "items": [
                {"seq": i.seq, "id": i.msg_id, "type": i.type, "at": i.created_at.isoformat(),
                 "body": msgspec.json.decode(i.body)}
                for i in items
            ]
        }

    # ---- actors and topics ----------------------------------------------------------------------

    @r("POST", "/api/v1/call", summary="Ask an actor; the reply comes after its commit",
       permission="actor.call", body=Call, tag="hub")
    async def call(ctx: RequestContext, body: Call) -> Any:
        assert ctx.principal is not None
        hub = ctx.services.hub
        try:
            address, message = hub.parse(body.to, body.type, body.body)
        except (BadMessage, UnknownActorKind) as err:
            raise from_hub(err) from None
        caller = Caller(ctx.principal.account_id, ctx.principal.caller_roles)
        try:
            allowed = hub.authorize(address, message, caller)
        except HubError as err:
            raise ApiError(403, err.code, err.message) from None
        if not allowed:
            raise ApiError(403, "forbidden", f"you may not send {body.type} to {body.to}")
        try:
            return {"result": await hub.ask(address, message, caller=caller)}
        except HubError as err:
            raise from_hub(err) from None

    @r("POST", "/api/v1/topics/publish", summary="Publish an event to a broadcast topic",
       permission="topic.publish", body=PublishBody, tag="hub")
    async def publish(ctx: RequestContext, body: PublishBody) -> Any:
        assert ctx.principal is not None
        if not may_publish(ctx.principal.permissions, body.topic):
            raise ApiError(403, "forbidden", f"you may not publish to {body.topic!r}; use broadcast/<name>")
        return {"subscribers": ctx.services.hub.topics.publish(body.topic, body.type, body.body)}

    # ---- administration -----------------------------------------------------------------------

    @r("POST", "/api/v1/admin/accounts", summary="Create accounts (bulk, all or none)",
       permission="admin.accounts", body=NewAccounts, tag="admin")
    async def create_accounts(ctx: RequestContext, body: NewAccounts) -> Any:
        if not 1 <= len(body.accounts) <= 1000:
            raise ApiError(422, "invalid", "send between 1 and 1000 accounts")
        specs = []
        enrolment: dict[str, str] = {}
        for a in body.accounts:
            secret = None
            if set(a.roles) & STAFF_ROLES:
                if a.password is None:
                    raise ApiError(422, "invalid", f"{a.login}: staff accounts need a password")
                secret = pyotp.random_base32()
                enrolment[a.login] = pyotp.TOTP(secret).provisioning_uri(name=a.login, issuer_name="CareHub")
            specs.append(NewAccount(a.login, a.display_name, a.roles, a.password, phone=a.phone, totp_secret=secret))
        for a in body.accounts:
            if (a.real_name is None) != (a.id_number is None) or (a.real_name and "patient" not in a.roles):
                raise ApiError(422, "invalid", f"{a.login}: real_name and id_number go together, for patients")
        try:
            ids = await ctx.services.identity.create_accounts(specs)
        except ValueError as err:
            raise ApiError(422, "invalid", str(err)) from None
        except LoginTaken as err:
            raise ApiError(409, "login_taken", str(err)) from None
        for account_id, a in zip(ids, body.accounts, strict=True):
            if set(a.roles) & SIGNER_ROLES:
                await ctx.services.signatures.issue_key(account_id)
            if a.real_name is not None and a.id_number is not None:
                with patient_errors():
                    await ctx.services.patients.add(
                        account_id, a.real_name, a.id_number, "self", verified_by="hospital_import", ip=client_ip()
                    )
        # staff scan these once into their authenticator app; CareHub never shows them again
        return json_response({"ids": ids, "totp_enrolment": enrolment}, 201)

    @r("POST", "/api/v1/admin/accounts/<account_id>/disable", summary="Disable an account (ends its sessions)",
       permission="admin.accounts", tag="admin")
    async def disable_account(ctx: RequestContext, account_id: str) -> Any:
        assert ctx.principal is not None
        if await ctx.services.identity.accounts.by_id(account_id) is None:
            raise ApiError(404, "not_found", f"no account {account_id}")
        if account_id == ctx.principal.account_id:
            raise ApiError(409, "refused", "不能停用自己的账号 (you cannot disable yourself)")
        revoked = await ctx.services.identity.disable(account_id, by=ctx.principal, ip=client_ip())
        close_sessions(ctx.services, set(revoked), "账号已停用 (account disabled)")
        return {"disabled": account_id, "sessions_revoked": len(revoked)}

    @r("POST", "/api/v1/admin/partners/<account_id>/keys", summary="Issue a signing key to a partner (SCH-9)",
       permission="admin.accounts", body=NewPartnerKey, tag="admin")
    async def partner_key(ctx: RequestContext, body: NewPartnerKey, account_id: str) -> Any:
        account = await ctx.services.identity.accounts.by_id(account_id)
        if account is None or "partner" not in account.roles:
            raise ApiError(404, "not_found", f"no partner account {account_id}")
        try:
            key_id, secret = await ctx.services.partners.create_key(account_id, body.operations)
        except ValueError as err:
            raise ApiError(422, "invalid", str(err)) from None
        # the secret is shown once; CareHub keeps it sealed
        return json_response({"key_id": key_id, "secret": secret, "operations": sorted(body.operations)}, 201)

    @r("GET", "/api/v1/admin/audit", summary="Search the audit trail (ADM-7), newest first",
       permission="admin.audit", tag="admin", query=AUDIT_QUERY)
    async def audit_search(ctx: RequestContext) -> Any:
        filters = audit_filters()
        records = await ctx.services.identity.audit.search(
            **filters, limit=_int_arg("limit", 100, 1, 1000), offset=_int_arg("offset", 0, 0, 10**9)
        )
        return {
            "entries": [
                {"id": e.id, "at": e.at.isoformat(), "actor": e.actor_id, "roles": list(e.actor_roles),
                 "action": e.action, "target": e.target, "outcome": str(e.outcome), "ip": e.source_ip,
                 "detail": e.detail}
                for e in records
            ]
        }

    @r("GET", "/api/v1/admin/audit.csv", summary="Export the audit trail as CSV (ADM-7)",
       permission="admin.audit", tag="admin", query=AUDIT_QUERY, content_type="text/csv")
    async def audit_csv(ctx: RequestContext) -> Any:
        limit = _int_arg("limit", 10_000, 1, 100_000)
        text = await ctx.services.identity.audit.export_csv(**audit_filters(), limit=limit)
        return Response(
            text, content_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="carehub-audit.csv"'},
        )

    @r("GET", "/api/v1/admin/audit/verify", summary="Check the audit chain for edited or deleted entries",
       permission="admin.audit", tag="admin")
    async def audit_verify(ctx: RequestContext) -> Any:
        report = await ctx.services.identity.audit.verify_chain()
        return {"ok": report.ok, "checked": report.checked, "first_bad_id": report.first_bad_id,
                "problem": report.problem, "message": report.message}

    @r("GET", "/api/v1/admin/roles", summary="Roles with their permissions and menus", permission="admin.roles",
       tag="admin")
    async def list_roles(ctx: RequestContext) -> Any:
        table = ctx.services.identity.roles
        assert table is not None
        return {
            "roles": [
                {"name": r.name, "description": r.description, "builtin": r.builtin,
                 "permissions": sorted(r.permissions), "menus": list(r.menus)}
                for r in table.roles.values()
            ],
            "all_permissions": sorted(ALL_PERMISSIONS),
        }

    @r("PUT", "/api/v1/admin/roles/<name>", summary="Create a role or change its permissions and menus",
       permission="admin.roles", body=RoleBody, tag="admin")
    async def put_role(ctx: RequestContext, body: RoleBody, name: str) -> Any:
        assert ctx.principal is not None and ctx.services.identity.roles is not None
        try:
            role = await ctx.services.identity.roles.put(name, body.description or name, body.permissions, body.menus)
        except RoleRefused as err:
            raise ApiError(err.status, "invalid" if err.status == 422 else "refused", err.message) from None
        ctx.services.identity.forget_all()
        await ctx.services.identity.audit.append(
            AuditEntry(action="role.change", target=f"role/{name}", actor_id=ctx.principal.account_id,
                       actor_roles=sorted(ctx.principal.roles), source_ip=client_ip(),
                       detail={"permissions": ",".join(sorted(role.permissions)), "menus": ",".join(role.menus)})
        )
        return {"name": role.name, "permissions": sorted(role.permissions), "menus": list(role.menus)}

    @r("PUT", "/api/v1/admin/accounts/<account_id>/roles", summary="Set an account's roles",
       permission="admin.roles", body=AccountRoles, tag="admin")
    async def set_account_roles(ctx: RequestContext, body: AccountRoles, account_id: str) -> Any:
        assert ctx.principal is not None
        identity = ctx.services.identity
        roles = frozenset(body.roles)
        unknown = roles - identity.known_roles()
        if not roles or unknown:
            raise ApiError(422, "invalid", f"unknown roles {sorted(unknown)}" if unknown else "give at least one role")
        if account_id == ctx.principal.account_id and "admin" not in roles:
            raise ApiError(409, "refused", "不能移除自己的管理员角色 (you cannot drop your own admin role)")
        if not await identity.accounts.set_roles(account_id, roles):
            raise ApiError(404, "not_found", f"no account {account_id}")
        identity.forget(account_id)
        await identity.audit.append(
            AuditEntry(action="role.grant", target=f"account/{account_id}", actor_id=ctx.principal.account_id,
                       actor_roles=sorted(ctx.principal.roles), source_ip=client_ip(),
                       detail={"roles": ",".join(sorted(roles))})
        )
        return {"id": account_id, "roles": sorted(roles)}

    # ---- third parties: HMAC-SM3 signed requests (docs/security.md) -----------------------------

    @r("POST", "/api/v1/open/topics/publish", summary="Partner: publish to a broadcast topic (signed)",
       permission=None, body=PublishBody, tag="open", partner_op="topics.publish")
    async def open_publish(ctx: RequestContext, body: PublishBody) -> Any:
        if not body.topic.startswith("broadcast/") or len(body.topic) > 200:
            raise ApiError(403, "forbidden", "partners publish to broadcast/<name> topics")
        return {"subscribers": ctx.services.hub.topics.publish(body.topic, body.type, body.body)}

    @r("GET", "/api/v1/open/departments", summary="Partner: the hospital's departments (signed)",
       permission=None, tag="open", partner_op="directory.read")
    async def open_departments(ctx: RequestContext) -> Any:
        rows = await ctx.services.db.fetch("SELECT id, name, campus, location FROM departments ORDER BY id")
        return {"departments": [dict(row) for row in rows]}

    # ---- people on an account (ME-1, ME-2) ------------------------------------------------------

    @r("GET", "/api/v1/me/patients", summary="My family members (就诊人), masked", permission="account.self",
       tag="patients")
    async def my_patients(ctx: RequestContext) -> Any:
        assert ctx.principal is not None
        with patient_errors():
            return {"patients": await ctx.services.patients.list_for(ctx.principal.account_id)}

    @r("POST", "/api/v1/me/patients", summary="Add myself or a family member (at most 5)",
       permission="account.self", body=AddPatient, tag="patients")
    async def add_patient(ctx: RequestContext, body: AddPatient) -> Any:
        assert ctx.principal is not None
        with patient_errors():
            view = await ctx.services.patients.add(
                ctx.principal.account_id, body.name, body.id_number, body.relation,
                guardian_consent=body.guardian_consent, ip=client_ip(),
            )
        return json_response(view, 201)

    @r("PATCH", "/api/v1/me/patients/<patient_id>", summary="Change how a family member is related to me",
       permission="account.self", body=PatientUpdate, tag="patients")
    async def update_patient(ctx: RequestContext, body: PatientUpdate, patient_id: str) -> Any:
        assert ctx.principal is not None
        with patient_errors():
            await ctx.services.patients.set_relation(ctx.principal.account_id, patient_id, body.relation)
        return {"updated": patient_id}

    @r("DELETE", "/api/v1/me/patients/<patient_id>", summary="Remove a family member from my account",
       permission="account.self", tag="patients")
    async def remove_patient(ctx: RequestContext, patient_id: str) -> Any:
        assert ctx.principal is not None
        with patient_errors():
            await ctx.services.patients.remove(ctx.principal.account_id, patient_id, ip=client_ip())
        return {"removed": patient_id}

    @r("POST", "/api/v1/me/patients/<patient_id>/default", summary="Make a family member my default",
       permission="account.self", tag="patients")
    async def default_patient(ctx: RequestContext, patient_id: str) -> Any:
        assert ctx.principal is not None
        with patient_errors():
            await ctx.services.patients.set_default(ctx.principal.account_id, patient_id)
        return {"default": patient_id}

    @r("POST", "/api/v1/me/patients/<patient_id>/face", summary="Start a face check (real-name verification)",
       permission="account.self", tag="patients")
    async def start_face(ctx: RequestContext, patient_id: str) -> Any:
        assert ctx.principal is not None
        with patient_errors():
            return await ctx.services.patients.start_face(ctx.principal.account_id, patient_id)

    @r("POST", "/api/v1/me/patients/<patient_id>/face/result", summary="Read the face check's outcome",
       permission="account.self", tag="patients")
    async def face_result(ctx: RequestContext, patient_id: str) -> Any:
        assert ctx.principal is not None
        with patient_errors():
            outcome = await ctx.services.patients.finish_face(ctx.principal.account_id, patient_id, ip=client_ip())
        ctx.services.identity.forget(ctx.principal.account_id)
        return outcome

    @r("POST", "/api/v1/me/patients/<patient_id>/photo", summary="Upload an ID photo for manual review (JPEG/PNG)",
       permission="account.self", tag="patients", content_type="image/jpeg")
    async def upload_photo(ctx: RequestContext, patient_id: str) -> Any:
        assert ctx.principal is not None
        length = request.content_length or 0
        if length > 2 * 1024 * 1024:
            raise ApiError(413, "too_large", "照片不能超过 2 MB (photo larger than 2 MB)")
        data = await request.get_data(cache=False, as_text=False)
        assert isinstance(data, bytes)
        with patient_errors():
            result = await ctx.services.patients.upload_photo(
                ctx.principal.account_id, patient_id, data, request.content_type or "", ip=client_ip()
            )
        return json_response(result, 202)

    @r("GET", "/api/v1/me/consents", summary="Requests to link people I hold to other accounts",
       permission="account.self", tag="patients")
    async def my_consents(ctx: RequestContext) -> Any:
        assert ctx.principal is not None
        return {"requests": await ctx.services.patients.pending_consents(ctx.principal.account_id)}

    @r("POST", "/api/v1/me/consents", summary="Agree (or not) that another account links me",
       permission="account.self", body=ConsentAnswer, tag="patients")
    async def answer_consent(ctx: RequestContext, body: ConsentAnswer) -> Any:
        assert ctx.principal is not None
        with patient_errors():
            await ctx.services.patients.answer_consent(
                ctx.principal.account_id, body.patient_id, body.requester, body.grant, ip=client_ip()
            )
        return {"granted": body.grant}

    @r("GET", "/api/v1/admin/verifications", summary="ID photos waiting for manual review",
       permission="admin.verify", tag="admin")
    async def reviews(ctx: RequestContext) -> Any:
        with patient_errors():
            return {"reviews": await ctx.services.patients.reviews()}

    @r("POST", "/api/v1/admin/verifications/<verification_id>/decide", summary="Approve or reject an ID photo",
       permission="admin.verify", body=ReviewDecision, tag="admin")
    async def decide_review(ctx: RequestContext, body: ReviewDecision, verification_id: str) -> Any:
        assert ctx.principal is not None
        with patient_errors():
            await ctx.services.patients.decide(
                verification_id, body.approve, body.reason, ctx.principal.account_id, ip=client_ip()
            )
        return {"decided": verification_id, "approved": body.approve}

    # ---- doctors: a patient's data within a care relationship -------------------------------------

    @r("GET", "/api/v1/doctor/patients/<patient_id>", summary="A patient's profile (needs a care relationship)",
       permission="patient.read", tag="doctor")
    async def doctor_patient(ctx: RequestContext, patient_id: str) -> Any:
        assert ctx.principal is not None
        roles = sorted(ctx.principal.roles)
        if not await ctx.services.care.check_read(ctx.principal.account_id, roles, patient_id, "profile", client_ip()):
            # 404, not 403: a doctor outside the care relationship does not learn the patient exists
            raise ApiError(404, "not_in_your_care", "您名下没有这位患者 (no patient of yours with this id)")
        with patient_errors():
            return await ctx.services.patients.profile_for_care(patient_id)

    @r("POST", "/api/v1/doctor/patients/<patient_id>/break-glass",
       summary="Emergency access for one hour, with a reason (audited, ops alerted)",
       permission="patient.read", body=BreakGlass, tag="doctor")
    async def break_glass(ctx: RequestContext, body: BreakGlass, patient_id: str) -> Any:
        assert ctx.principal is not None
        if len(body.reason.strip()) < 10:
            message = "请说明紧急调阅的理由（至少10个字）(give a reason of at least 10 characters)"
            raise ApiError(422, "invalid", message)
        with patient_errors():
            await ctx.services.patients.profile_for_care(patient_id)  # 404 for unknown patients
        until = await ctx.services.care.break_glass(
            ctx.principal.account_id, sorted(ctx.principal.roles), patient_id, body.reason.strip(), client_ip()
        )
        alarm = f"break-glass: {ctx.principal.login} opened patient {patient_id}: {body.reason}"
        ctx.services.hub.alarm("warning", alarm)
        return {"until": until.isoformat()}

    # ---- ops ------------------------------------------------------------------------------------

    @r("GET", "/api/v1/ops/snapshot", summary="Hub figures for the ops dashboard", permission="ops.view", tag="ops")
    async def ops_snapshot(ctx: RequestContext) -> Any:
        return ops_figures(ctx.services)

    @r("GET", "/api/v1/ops/actors", summary="Search live actors", permission="ops.view", tag="ops",
       query=("search", "limit"))
    async def ops_actors(ctx: RequestContext) -> Any:
        search = request.args.get("search", "")[:200]
        return {"actors": ctx.services.hub.live_actors(search, _int_arg("limit", 50, 1, 500))}

    @r("POST", "/api/v1/ops/actors/<path:address>/release", summary="Lift an actor's quarantine",
       permission="ops.manage", tag="ops")
    async def ops_release(ctx: RequestContext, address: str) -> Any:
        if not ctx.services.hub.release(address):
            raise ApiError(404, "not_quarantined", f"{address} is not quarantined")
        return {"released": address}

    @r("GET", "/ops", summary="Live ops dashboard (HTML; data over the WebSocket, ops role)",
       permission=None, tag="ops", content_type="text/html")
    async def ops_page(ctx: RequestContext) -> Any:
        html = importlib.resources.files("carehub.http").joinpath("templates/ops.html").read_text("utf-8")
        return Response(html, content_type="text/html; charset=utf-8")

    # ---- the demo hospital's directory ------------------------------------------------------------

    @r("GET", "/api/v1/departments", summary="Departments of the hospital", permission=None, tag="directory")
    async def departments(ctx: RequestContext) -> Any:
        rows = await ctx.services.db.fetch("SELECT id, name, campus, location FROM departments ORDER BY id")
        return {"departments": [dict(row) for row in rows]}

    @r("GET", "/api/v1/doctors", summary="Doctors, optionally by department", permission=None, tag="directory",
       query=("department",))
    async def doctors(ctx: RequestContext) -> Any:
        department = request.args.get("department")
        rows = await ctx.services.db.fetch(
            "SELECT a.id, a.display_name AS name, d.department_id, d.title, d.specialty"
            " FROM doctors d JOIN accounts a ON a.id = d.account_id"
            " WHERE NOT a.disabled AND ($1::varchar IS NULL OR d.department_id = $1) ORDER BY a.id",
            department,
        )
        return {"doctors": [dict(row) for row in rows]}

    return app, router


AUDIT_QUERY = ("actor", "action", "target", "since", "until", "outcome", "limit", "offset")


def _time_arg(name: str) -> dt.datetime | None:
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, "bad_request", f"query parameter {name!r} must be an ISO 8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def audit_filters() -> dict[str, Any]:
    outcome = request.args.get("outcome") or None
    if outcome is not None and outcome not in ("ok", "denied", "error"):
        raise ApiError(400, "bad_request", "outcome must be ok, denied or error")
    return {
        "actor": request.args.get("actor") or None,
        "action": request.args.get("action") or None,
        "target_prefix": request.args.get("target") or None,
        "since": _time_arg("since"),
        "until": _time_arg("until"),
        "outcome": outcome,
    }


def client_ip() -> str | None:
    return request.remote_addr


def session_body(token: str, principal: Principal) -> dict[str, Any]:
    return {
        "token": token,
        "account": {"id": principal.account_id, "name": principal.display_name, "roles": sorted(principal.roles)},
    }


@contextmanager
def sign_in_errors() -> Iterator[None]:
    """Sign-in failures as HTTP: 401 wrong, 423 locked, 429 too often, 422 bad phone, 503 no SMS."""
    try:
        yield
    except AuthFailed as err:
        raise ApiError(401, "auth_failed", str(err)) from None
    except AccountLocked as err:
        seconds = max(1, int((err.until - dt.datetime.now(dt.UTC)).total_seconds()))
        raise ApiError(423, "account_locked", str(err), headers={"Retry-After": str(seconds)}) from None
    except RateLimited as err:
        raise ApiError(429, "rate_limited", err.message, headers={"Retry-After": str(err.retry_after)}) from None
    except SmsUnavailable as err:
        raise ApiError(503, "sms_unavailable", str(err)) from None
    except (DecryptionFailed, KeyRingError) as err:
        raise key_ring_error(err) from None
    except ValueError as err:
        raise ApiError(422, "invalid", str(err)) from None


def key_ring_error(err: Exception) -> ApiError:
    """Stored values that do not open: the key file is not the one they were written with."""
    log.error("ALARM key ring: %s (is CAREHUB_KEY_FILE the key file this database was written with?)", err)
    message = "加密密钥与数据库不匹配，已通知运维 (the encryption keys do not fit the data)"
    return ApiError(503, "key_ring_mismatch", message)


@contextmanager
def patient_errors() -> Iterator[None]:
    try:
        yield
    except PatientRefused as err:
        raise ApiError(err.status, err.code, err.message) from None
    except (DecryptionFailed, KeyRingError) as err:
        raise key_ring_error(err) from None
    except IntegrityError as err:
        log.error("ALARM integrity: %s", err)
        message = "数据完整性校验失败，已通知运维 (a stored record failed its check)"
        raise ApiError(500, "integrity_error", message) from None


def close_sessions(services: Services, token_hashes: set[str], reason: str) -> None:
    """Close every WebSocket opened with one of these (now revoked) tokens, with 4003."""
    for conn in list(services.connections.values()):
        if conn.principal is not None and conn.principal.token_hash in token_hashes:
            conn.kick(CLOSE_REVOKED, reason)


def ops_figures(services: Services) -> dict[str, Any]:
    snap = services.hub.snapshot()
    snap["connections"] = len(services.push.sessions)
    snap["accounts_online"] = len(services.push.by_account)
    snap["topics"] = services.hub.topics.topic_count()
    snap["reminders_due"] = services.extra.get("reminders_due", 0)
    snap["ws_bad_frames"] = services.stats.bad_frames
    snap["ws_kicked_slow"] = services.stats.kicked_slow
    snap["pushed_total"] = services.push.pushed
    return snap


__all__ = ["create_app", "json_response", "ops_figures"]
