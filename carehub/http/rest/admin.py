"""Administration: accounts, partners' keys, audit trail, roles."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import pyotp
from quart import Response, request

from carehub.identity import STAFF_ROLES, Identity, NewAccount
from carehub.identity.partners import OPERATIONS, Partners
from carehub.identity.patients import Patients
from carehub.identity.permissions import ALL_PERMISSIONS
from carehub.identity.signatures import SIGNER_ROLES, Signatures
from carehub.storage.audit import AuditEntry

from ..errors import ApiError
from ..routing import RequestContext, RouteDecorator, json_response
from .args import AUDIT_QUERY, audit_filters, client_ip, int_arg
from .auth import CloseSessions


class NewAccountBody(msgspec.Struct, forbid_unknown_fields=True):
    login: str
    display_name: str
    roles: list[str]
    password: str | None = None
    phone: str | None = None
    #: patients the hospital already verified at its counter (imported from the HIS)
    real_name: str | None = None
    id_number: str | None = None


class NewAccounts(msgspec.Struct, forbid_unknown_fields=True):
    accounts: list[NewAccountBody]


class RoleBody(msgspec.Struct, forbid_unknown_fields=True):
    permissions: list[str]
    menus: list[str] = msgspec.field(default_factory=list)
    description: str = ""


class AccountRoles(msgspec.Struct, forbid_unknown_fields=True):
    roles: list[str]


class NewPartnerKey(msgspec.Struct, forbid_unknown_fields=True):
    operations: list[str]


# ---- answers (OpenAPI response schemas of the routes the admin console uses) ---------------------


class PartnerKeyView(msgspec.Struct):
    key_id: str
    operations: list[str]
    created_at: dt.datetime
    #: revoked: signed requests with it are refused
    revoked: bool


class PartnerView(msgspec.Struct):
    id: str
    login: str
    name: str
    disabled: bool
    keys: list[PartnerKeyView]


class PartnersView(msgspec.Struct):
    partners: list[PartnerView]
    #: what a key may be allowed to do
    operations: list[str]


class IssuedKeyView(msgspec.Struct):
    key_id: str
    #: shown once, never again
    secret: str
    operations: list[str]


class RevokedKeyView(msgspec.Struct):
    key_id: str
    revoked: bool
    #: False: it was revoked before
    changed: bool


class AuditEntryView(msgspec.Struct):
    id: int
    at: str
    actor: str | None
    #: the actor's name as others may see it (a patient's is masked)
    actor_name: str | None
    roles: list[str]
    action: str
    target: str
    outcome: str
    ip: str | None
    detail: dict[str, Any]


class AuditView(msgspec.Struct):
    entries: list[AuditEntryView]


class AuditVerifyView(msgspec.Struct):
    ok: bool
    checked: int
    first_bad_id: int | None
    problem: str | None
    message: str


class AccountView(msgspec.Struct):
    id: str
    login: str
    #: what others may see: a patient's name is masked
    name: str
    roles: list[str]
    disabled: bool
    locked_until: dt.datetime | None


class AccountsView(msgspec.Struct):
    accounts: list[AccountView]
    #: every role an account may be given
    roles: list[str]


class CreatedAccountsView(msgspec.Struct):
    ids: list[str]
    #: login -> otpauth:// link for staff accounts, shown once
    totp_enrolment: dict[str, str]


class DisabledAccountView(msgspec.Struct):
    disabled: str
    sessions_revoked: int


class RoleSetView(msgspec.Struct):
    name: str
    permissions: list[str]
    menus: list[str]


class AccountRolesView(msgspec.Struct):
    id: str
    roles: list[str]


class RoleView(msgspec.Struct):
    name: str
    description: str
    builtin: bool
    permissions: list[str]
    menus: list[str]


class RolesView(msgspec.Struct):
    roles: list[RoleView]
    all_permissions: list[str]


def register(
    r: RouteDecorator, *, identity: Identity, patients: Patients, partners: Partners, signatures: Signatures,
    close_sessions: CloseSessions,
) -> None:
    @r("GET", "/api/v1/admin/accounts", summary="Accounts by login, optionally by role or login/name text",
       permission="admin.accounts", tag="admin", query=("role", "q", "limit", "offset"), response=AccountsView)
    async def list_accounts(ctx: RequestContext) -> Any:
        role = request.args.get("role") or None
        if role is not None and role not in identity.known_roles():
            raise ApiError(400, "bad_request", f"没有角色 {role[:40]} (unknown role)")
        search = (request.args.get("q") or "").strip() or None
        if search is not None and (len(search) > 64 or "\x00" in search):
            raise ApiError(400, "bad_request", "搜索内容过长或含有不允许的字符 (q is too long)")
        found = await identity.accounts.listing(
            role=role, search=search, limit=int_arg("limit", 50, 1, 500), offset=int_arg("offset", 0, 0, 10**7)
        )
        return {
            "accounts": [
                {"id": a.id, "login": a.login, "name": a.listed_name, "roles": sorted(a.roles), "disabled": a.disabled,
                 "locked_until": a.locked_until}
                for a in found
            ],
            "roles": sorted(identity.known_roles()),
        }

    @r("POST", "/api/v1/admin/accounts", summary="Create accounts (bulk, all or none)",
       permission="admin.accounts", body=NewAccounts, tag="admin", response=CreatedAccountsView, status=201)
    async def create_accounts(ctx: RequestContext, body: NewAccounts) -> Any:
        if not 1 <= len(body.accounts) <= 1000:
            raise ApiError(422, "invalid", "一次可创建 1 到 1000 个账号 (send between 1 and 1000 accounts)")
        specs = []
        enrolment: dict[str, str] = {}
        for a in body.accounts:
            secret = None
            if set(a.roles) & STAFF_ROLES:
                if a.password is None:
                    raise ApiError(422, "invalid", f"{a.login}：工作人员账号需要设置密码 (staff need a password)")
                secret = pyotp.random_base32()
                enrolment[a.login] = pyotp.TOTP(secret).provisioning_uri(name=a.login, issuer_name="CareHub")
            specs.append(NewAccount(a.login, a.display_name, a.roles, a.password, phone=a.phone, totp_secret=secret))
        for a in body.accounts:
            if (a.real_name is None) != (a.id_number is None) or (a.real_name and "patient" not in a.roles):
                raise ApiError(422, "invalid", f"{a.login}：患者的姓名和身份证号需同时填写 (real_name + id_number)")
        ids = await identity.create_accounts(specs)  # IdentityInvalid 422, LoginTaken 409: all or none
        for account_id, a in zip(ids, body.accounts, strict=True):
            if set(a.roles) & SIGNER_ROLES:
                await signatures.issue_key(account_id)
            if a.real_name is not None and a.id_number is not None:
                await patients.add(
                    account_id, a.real_name, a.id_number, "self", verified_by="hospital_import", ip=client_ip()
                )
        # staff scan these once into their authenticator app; CareHub never shows them again
        return json_response({"ids": ids, "totp_enrolment": enrolment}, 201)

    @r("POST", "/api/v1/admin/accounts/<account_id>/disable", summary="Disable an account (ends its sessions)",
       permission="admin.accounts", tag="admin", response=DisabledAccountView)
    async def disable_account(ctx: RequestContext, account_id: str) -> Any:
        assert ctx.principal is not None
        if await identity.accounts.by_id(account_id) is None:
            raise ApiError(404, "not_found", f"账号 {account_id[:64]} 不存在 (no account {account_id[:64]})")
        if account_id == ctx.principal.account_id:
            raise ApiError(409, "refused", "不能停用自己的账号 (you cannot disable yourself)")
        revoked = await identity.disable(account_id, by=ctx.principal, ip=client_ip())
        close_sessions(set(revoked), "账号已停用 (account disabled)")
        return {"disabled": account_id, "sessions_revoked": len(revoked)}

    async def partner_account(account_id: str) -> None:
        account = await identity.accounts.by_id(account_id)
        if account is None or "partner" not in account.roles:
            raise ApiError(404, "not_found", f"合作方账号 {account_id[:64]} 不存在 (no partner account)")

    async def audited(ctx: RequestContext, action: str, target: str, detail: dict[str, Any]) -> None:
        assert ctx.principal is not None
        await identity.audit.append(
            AuditEntry(action=action, target=target, actor_id=ctx.principal.account_id,
                       actor_roles=sorted(ctx.principal.roles), source_ip=client_ip(), detail=detail)
        )

    @r("GET", "/api/v1/admin/partners", summary="Partner accounts and their signing keys, never the secrets (SCH-9)",
       permission="admin.accounts", tag="admin", response=PartnersView)
    async def list_partners(ctx: RequestContext) -> Any:
        accounts = await identity.accounts.with_role("partner")
        keys = await partners.list_keys([a.id for a in accounts])
        return {
            "partners": [
                {"id": a.id, "login": a.login, "name": a.display_name, "disabled": a.disabled,
                 "keys": [{"key_id": k.key_id, "operations": sorted(k.operations), "created_at": k.created_at,
                           "revoked": k.disabled} for k in keys if k.account_id == a.id]}
                for a in accounts
            ],
            "operations": list(OPERATIONS),
        }

    @r("POST", "/api/v1/admin/partners/<account_id>/keys", summary="Issue a signing key to a partner (SCH-9)",
       permission="admin.accounts", body=NewPartnerKey, tag="admin", response=IssuedKeyView, status=201)
    async def partner_key(ctx: RequestContext, body: NewPartnerKey, account_id: str) -> Any:
        await partner_account(account_id)
        key_id, secret = await partners.create_key(account_id, body.operations)
        await audited(ctx, "partner.key_issue", f"account/{account_id}",
                      {"key_id": key_id, "operations": ",".join(sorted(body.operations))})
        # the secret is shown once; CareHub keeps it sealed
        return json_response({"key_id": key_id, "secret": secret, "operations": sorted(body.operations)}, 201)

    @r("DELETE", "/api/v1/admin/partners/<account_id>/keys/<key_id>",
       summary="Revoke a partner's signing key for good (SCH-9)", permission="admin.accounts", tag="admin",
       response=RevokedKeyView)
    async def revoke_partner_key(ctx: RequestContext, account_id: str, key_id: str) -> Any:
        await partner_account(account_id)
        changed = await partners.revoke_key(account_id, key_id)
        if changed:
            await audited(ctx, "partner.key_revoke", f"account/{account_id}", {"key_id": key_id})
        return {"key_id": key_id, "revoked": True, "changed": changed}

    @r("GET", "/api/v1/admin/audit", summary="Search the audit trail (ADM-7), newest first",
       permission="admin.audit", tag="admin", query=AUDIT_QUERY, response=AuditView)
    async def audit_search(ctx: RequestContext) -> Any:
        filters = audit_filters()
        records = await identity.audit.search(
            **filters, limit=int_arg("limit", 100, 1, 1000), offset=int_arg("offset", 0, 0, 10**9)
        )
        names = await identity.accounts.listed_names([e.actor_id for e in records if e.actor_id])
        return {
            "entries": [
                {"id": e.id, "at": e.at.isoformat(), "actor": e.actor_id,
                 "actor_name": names.get(e.actor_id) if e.actor_id else None, "roles": list(e.actor_roles),
                 "action": e.action, "target": e.target, "outcome": str(e.outcome), "ip": e.source_ip,
                 "detail": e.detail}
                for e in records
            ]
        }

    @r("GET", "/api/v1/admin/audit.csv", summary="Export the audit trail as CSV (ADM-7)",
       permission="admin.audit", tag="admin", query=AUDIT_QUERY, content_type="text/csv")
    async def audit_csv(ctx: RequestContext) -> Any:
        limit = int_arg("limit", 10_000, 1, 100_000)
        text = await identity.audit.export_csv(**audit_filters(), limit=limit)
        return Response(
            text, content_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="carehub-audit.csv"'},
        )

    @r("GET", "/api/v1/admin/audit/verify", summary="Check the audit chain for edited or deleted entries",
       permission="admin.audit", tag="admin", response=AuditVerifyView)
    async def audit_verify(ctx: RequestContext) -> Any:
        report = await identity.audit.verify_chain()
        return {"ok": report.ok, "checked": report.checked, "first_bad_id": report.first_bad_id,
                "problem": report.problem, "message": report.message}

    @r("GET", "/api/v1/admin/roles", summary="Roles with their permissions and menus", permission="admin.roles",
       tag="admin", response=RolesView)
    async def list_roles(ctx: RequestContext) -> Any:
        table = identity.roles
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
       permission="admin.roles", body=RoleBody, tag="admin", response=RoleSetView)
    async def put_role(ctx: RequestContext, body: RoleBody, name: str) -> Any:
        assert ctx.principal is not None and identity.roles is not None
        role = await identity.roles.put(name, body.description or name, body.permissions, body.menus)
        identity.forget_all()
        await identity.audit.append(
            AuditEntry(action="role.change", target=f"role/{name}", actor_id=ctx.principal.account_id,
                       actor_roles=sorted(ctx.principal.roles), source_ip=client_ip(),
                       detail={"permissions": ",".join(sorted(role.permissions)), "menus": ",".join(role.menus)})
        )
        return {"name": role.name, "permissions": sorted(role.permissions), "menus": list(role.menus)}

    @r("PUT", "/api/v1/admin/accounts/<account_id>/roles", summary="Set an account's roles",
       permission="admin.roles", body=AccountRoles, tag="admin", response=AccountRolesView)
    async def set_account_roles(ctx: RequestContext, body: AccountRoles, account_id: str) -> Any:
        assert ctx.principal is not None
        roles = frozenset(body.roles)
        unknown = roles - identity.known_roles()
        if not roles or unknown:
            names = "、".join(sorted(unknown))[:200]
            raise ApiError(422, "invalid", f"没有这些角色：{names} (unknown roles)" if unknown
                           else "请至少选择一个角色 (give at least one role)")
        if account_id == ctx.principal.account_id and "admin" not in roles:
            raise ApiError(409, "refused", "不能移除自己的管理员角色 (you cannot drop your own admin role)")
        if not await identity.accounts.set_roles(account_id, roles):
            raise ApiError(404, "not_found", f"账号 {account_id[:64]} 不存在 (no account {account_id[:64]})")
        identity.forget(account_id)
        await identity.audit.append(
            AuditEntry(action="role.grant", target=f"account/{account_id}", actor_id=ctx.principal.account_id,
                       actor_roles=sorted(ctx.principal.roles), source_ip=client_ip(),
                       detail={"roles": ",".join(sorted(roles))})
        )
        return {"id": account_id, "roles": sorted(roles)}
