"""Administration: accounts, partners' keys, audit trail, roles."""

from __future__ import annotations

from typing import Any

import msgspec
import pyotp
from quart import Response

from carehub.identity import (
    STAFF_ROLES,
    NewAccount,
)
from carehub.identity.permissions import ALL_PERMISSIONS
from carehub.identity.roles import RoleRefused
from carehub.identity.signatures import SIGNER_ROLES
from carehub.storage.accounts import LoginTaken
from carehub.storage.audit import AuditEntry

from ..errors import ApiError
from ..routing import RequestContext, RouteDecorator, json_response
from .args import AUDIT_QUERY, audit_filters, client_ip, int_arg
from .shared import patient_errors


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


def register(r: RouteDecorator) -> None:
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
        ctx.services.gateway.close_sessions(set(revoked), "账号已停用 (account disabled)")
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
            **filters, limit=int_arg("limit", 100, 1, 1000), offset=int_arg("offset", 0, 0, 10**9)
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
        limit = int_arg("limit", 10_000, 1, 100_000)
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
