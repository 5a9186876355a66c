"""Accounts, sign-in and session tokens.

- Patients sign in with their phone number and a one-time SMS code (5 minutes, single use,
  at most 5 wrong tries per code; per-phone and per-IP limits). A new phone number gets a
  patient account on first sign-in.
- Staff (doctor, pharmacist, admin, ops) sign in with password (argon2id) **and** a TOTP code
  (RFC 6238); a TOTP code is accepted once. Idle staff sessions expire after ``staff_idle_minutes``.
- Wrong passwords are counted per account **and source address**: five in a row lock that
  address out of that account for ``lockout_minutes``, doubled at each further lock (at most
  ``max_lockout_hours``), so a stranger cannot lock a doctor out from elsewhere. Ops are alarmed
  when an address is locked out, and when one account fails from ``alarm_sources`` addresses
  within ``lockout_minutes`` (guessing from many places). The second factor keeps its own lockout:
  five wrong TOTP codes after a right password lock the account itself (only someone holding the
  password can cause that).
- Accounts that hold a password but no staff role (integration and load-test accounts made by
  admins, the demo patients) may use password sign-in; patients created by SMS have none.
- Tokens are 256-bit random values stored as SHA-256 hashes; a check is cached briefly.
- Every sign-in, failure, lockout, sign-out and disable is written to the audit log.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterable
from typing import NoReturn

import argon2
import pyotp
import trio

from carehub.channels.sms import TEMPLATES, SmsChannel, SmsError, SmsRateLimited
from carehub.storage.audit import AuditEntry, AuditLog, Outcome
from carehub.storage.identity.accounts import NAME_FIELD, AccountRow, AccountStore
from carehub.storage.keyring import KeyRing

from .errors import AccountLocked, AuthFailed, IdentityInvalid, RateLimited, SmsUnavailable
from .masking import mask_name, mask_phone
from .permissions import ROLES, role_permissions
from .ratelimit import RateLimiter
from .roles import RoleTable

log = logging.getLogger("carehub.identity")

# OWASP's argon2id minimum: fast enough for bulk sign-ins, still memory-hard
_hasher = argon2.PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
_LOGIN = re.compile(r"^[A-Za-z0-9_.@+-]{3,64}$")
_PHONE = re.compile(r"^1[3-9]\d{9}$")
STAFF_ROLES = frozenset({"doctor", "pharmacist", "admin", "ops"})
#: Pseudo-role that callers carry once their own person passed real-name verification.
VERIFIED = "real_name_verified"


@dataclasses.dataclass(frozen=True)
class IdentitySettings:
    token_ttl_seconds: int = 12 * 3600
    cache_seconds: float = 15.0
    lockout_failures: int = 5
    lockout_minutes: float = 15.0
    #: an address's lock doubles each time, up to this
    max_lockout_hours: float = 24.0
    #: addresses failing on one account within ``lockout_minutes`` that raise an ops alarm
    alarm_sources: int = 5
    staff_idle_minutes: float = 30.0
    sms_code_seconds: int = 300
    sms_code_attempts: int = 5
    #: (count, seconds) windows
    sms_per_phone: tuple[tuple[int, float], ...] = ((1, 60.0), (5, 3600.0))
    sms_per_ip: tuple[tuple[int, float], ...] = ((10, 60.0), (60, 3600.0))
    login_per_ip: tuple[tuple[int, float], ...] = ((30, 60.0),)


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    account_id: str
    login: str
    display_name: str
    roles: frozenset[str]
    permissions: frozenset[str]
    token_hash: str | None = None
    #: real-name verified (required before consulting, booking or paying)
    verified: bool = False

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    @property
    def caller_roles(self) -> frozenset[str]:
        """Roles as actors see them, with ``real_name_verified`` when the account is verified."""
        return self.roles | {VERIFIED} if self.verified else self.roles

    @property
    def is_staff(self) -> bool:
        return bool(self.roles & STAFF_ROLES)


def is_person(roles: frozenset[str]) -> bool:
    """Whether an account is a person's (a patient's), whose real name is sealed and shown masked to
    others; staff and partners have public names."""
    return "patient" in roles and not roles & STAFF_ROLES


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def password_problem(password: str, login: str = "") -> str | None:
    """Why ``password`` is too weak for a staff account, or None (GB/T 22239 level 3)."""
    if len(password) < 10:
        return "密码至少 10 位 (at least 10 characters)"
    classes = sum(
        bool(re.search(pattern, password)) for pattern in (r"[a-z]", r"[A-Z]", r"\d", r"[^A-Za-z0-9]")
    )
    if classes < 3:
        return "密码需包含大写字母、小写字母、数字、符号中的至少三类 (3 of: lower, upper, digit, symbol)"
    if login and login.lower() in password.lower():
        return "密码不能包含账号名 (must not contain the login)"
    return None


def normalise_phone(phone: str) -> str:
    phone = phone.strip().replace(" ", "").replace("-", "")
    if phone.startswith("+86"):
        phone = phone[3:]
    if not _PHONE.match(phone):
        raise IdentityInvalid("手机号格式不正确 (a mainland mobile number has 11 digits starting with 1)")
    return phone


@dataclasses.dataclass(frozen=True)
class NewAccount:
    login: str
    display_name: str
    roles: Iterable[str]
    password: str | None = None
    phone: str | None = None
    totp_secret: str | None = None


class Identity:
    def __init__(
        self,
        accounts: AccountStore,
        keyring: KeyRing,
        audit: AuditLog,
        *,
        sms: SmsChannel | None = None,
        settings: IdentitySettings | None = None,
        alarm: Callable[[str, str], None] | None = None,
    ) -> None:
        self.accounts = accounts
        self.keyring = keyring
        self.audit = audit
        self.sms = sms
        self.settings = settings or IdentitySettings()
        self.limits = RateLimiter()
        #: raises an ops alarm ``(level, text)``: the hub's (log ALARM line and the ops dashboard), set by the app
        self.alarm: Callable[[str, str], None] = alarm or _log_alarm
        #: admin-managed roles; None: the built-in defaults
        self.roles: RoleTable | None = None
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._seen: dict[str, float] = {}

    # ---- password (+ TOTP for staff) -----------------------------------------------------------

    async def login(
        self, login: str, password: str, *, totp: str | None = None, ip: str | None = None
    ) -> tuple[str, Principal]:
        self.limits.take(f"login-ip:{ip}", self.settings.login_per_ip, "登录尝试过于频繁，请稍后再试")
        row = await self.accounts.by_login(login)
        now = dt.datetime.now(dt.UTC)
        if row is None or row.password_hash is None or row.disabled:
            await trio.to_thread.run_sync(_verify_quietly, password)  # same timing either way
            await self._audit("auth.login_failed", login, Outcome.DENIED, None, ip, {"reason": "unknown_or_disabled"})
            raise AuthFailed("账号或密码错误")
        source = ip or ""
        if row.locked_until is not None and row.locked_until > now:  # the second factor's lock: the account itself
            await self._audit("auth.login_locked", row.id, Outcome.DENIED, row, ip, {})
            raise AccountLocked(row.locked_until, now=now)
        source_lock = await self.accounts.source_locked_until(row.id, source, now)
        if source_lock is not None:
            await self._audit("auth.login_locked", row.id, Outcome.DENIED, row, ip, {"scope": "address"})
            raise AccountLocked(source_lock, now=now)
        if not await trio.to_thread.run_sync(_verify, row.password_hash, password):
            await self._password_failed(row, source, ip, now)
        step = 0
        if row.roles & STAFF_ROLES:
            step = self._totp_step(row, totp)
            if step == 0:
                locked = await self.accounts.record_failure(
                    row.id, self.settings.lockout_failures, now + dt.timedelta(minutes=self.settings.lockout_minutes)
                )
                await self._audit("auth.login_failed", row.id, Outcome.DENIED, row, ip, {"reason": "totp"})
                if locked is not None:
                    await self._audit("auth.account_locked", row.id, Outcome.DENIED, row, ip,
                                      {"until": locked.isoformat()})
                    raise AccountLocked(locked, now=now)
                raise AuthFailed("动态验证码错误或已使用")
        if step and not await self.accounts.use_totp_step(row.id, step):
            raise AuthFailed("动态验证码已使用，请等待下一个验证码")
        await self.accounts.record_success(row.id, source)
        return await self._open_session(row, ip, "password+totp" if step else "password")

    async def _password_failed(self, row: AccountRow, source: str, ip: str | None, now: dt.datetime) -> NoReturn:
        """Count a wrong password for this account from this address; lock the address out at the limit."""
        window = dt.timedelta(minutes=self.settings.lockout_minutes)
        locked, sources = await self.accounts.record_password_failure(
            row.id, source, limit=self.settings.lockout_failures, lock=window,
            max_lock=dt.timedelta(hours=self.settings.max_lockout_hours), now=now, window=window,
        )
        await self._audit("auth.login_failed", row.id, Outcome.DENIED, row, ip, {"reason": "password"})
        if sources == self.settings.alarm_sources:
            self.alarm("warning", f"password guessing: account {row.login} failed from {sources} addresses"
                                  f" within {self.settings.lockout_minutes:g} min")
        if locked is not None:
            await self._audit("auth.account_locked", row.id, Outcome.DENIED, row, ip,
                              {"until": locked.isoformat(), "scope": "address"})
            self.alarm("warning", f"sign-in: address {source or '?'} locked out of account {row.login}"
                                  f" until {locked.isoformat()} (wrong passwords)")
            raise AccountLocked(locked, now=now)
        raise AuthFailed("账号或密码错误")

    def _totp_step(self, row: AccountRow, code: str | None) -> int:
        """The TOTP time step ``code`` belongs to (±1 step of drift), or 0 if it is wrong or reused."""
        if not code or row.totp_secret_enc is None or not code.isdigit():
            return 0
        secret = self.keyring.open(row.totp_secret_enc, field="accounts.totp_secret")
        totp = pyotp.TOTP(secret)
        now = time.time()
        for drift in (0, -1, 1):
            at = now + drift * totp.interval
            if secrets.compare_digest(totp.at(at), code):
                step = int(at // totp.interval)
                return step if step > row.totp_last_step else 0
        return 0

    # ---- SMS codes (patients) -----------------------------------------------------------------

    async def request_sms_code(self, phone: str, *, ip: str | None = None) -> int:
        """Send a sign-in code; returns its lifetime in seconds."""
        phone = normalise_phone(phone)
        phone_idx = self.keyring.blind_index(phone, field="accounts.phone")
        self.limits.check(f"sms-phone:{phone_idx}", self.settings.sms_per_phone, "验证码发送过于频繁，请稍后再试")
        self.limits.check(f"sms-ip:{ip}", self.settings.sms_per_ip, "验证码请求过于频繁，请稍后再试")
        if self.sms is None:
            raise SmsUnavailable("短信服务未配置 (no SMS gateway configured)")
        code = f"{secrets.randbelow(1_000_000):06d}"
        code_id = uuid.uuid4().hex
        now = dt.datetime.now(dt.UTC)
        expires = now + dt.timedelta(seconds=self.settings.sms_code_seconds)
        template = TEMPLATES["login_code"]
        self.limits.hit(f"sms-phone:{phone_idx}")
        self.limits.hit(f"sms-ip:{ip}")
        try:
            result = await self.sms.send(phone, template.code, {"code": code}, out_id=code_id)
        except SmsRateLimited as err:
            raise RateLimited(60, "验证码发送过于频繁，请稍后再试") from err
        except SmsError as err:
            await self._audit("auth.sms_code", mask_phone(phone), Outcome.ERROR, None, ip, {"code": str(err.code)})
            raise SmsUnavailable(f"短信发送失败，请稍后再试 ({err.code})") from err
        await self.accounts.store_sms_code(
            code_id, phone_idx, self._code_mac(phone_idx, code), now, expires, ip, result.biz_id
        )
        await self._audit("auth.sms_code", mask_phone(phone), Outcome.OK, None, ip, {"biz_id": result.biz_id})
        return self.settings.sms_code_seconds

    def _code_mac(self, phone_idx: str, code: str) -> str:
        return self.keyring.mac("sms-code", f"{phone_idx}:{code}".encode())

    async def login_sms(self, phone: str, code: str, *, ip: str | None = None) -> tuple[str, Principal]:
        phone = normalise_phone(phone)
        self.limits.take(f"login-ip:{ip}", self.settings.login_per_ip, "登录尝试过于频繁，请稍后再试")
        phone_idx = self.keyring.blind_index(phone, field="accounts.phone")
        now = dt.datetime.now(dt.UTC)
        used = await self.accounts.use_sms_code(
            phone_idx, self._code_mac(phone_idx, code.strip()), now, self.settings.sms_code_attempts
        )
        if not used:
            await self._audit("auth.login_failed", mask_phone(phone), Outcome.DENIED, None, ip, {"reason": "sms_code"})
            raise AuthFailed("验证码错误或已过期")
        row = await self.accounts.by_phone(phone_idx)
        if row is None:
            created = NewAccount(f"p{uuid.uuid4().hex[:12]}", f"用户{phone[-4:]}", ["patient"], phone=phone)
            await self.create_accounts([created], enforce_strength=False)
            row = await self.accounts.by_phone(phone_idx)
            assert row is not None
        if row.disabled:
            raise AuthFailed("账号已停用")
        return await self._open_session(row, ip, "sms")

    # ---- sessions -----------------------------------------------------------------------------

    async def _open_session(self, row: AccountRow, ip: str | None, method: str) -> tuple[str, Principal]:
        token = secrets.token_urlsafe(32)
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.settings.token_ttl_seconds)
        await self.accounts.create_session(_token_hash(token), row.id, expires, ip)
        await self._audit("auth.login", row.id, Outcome.OK, row, ip, {"method": method})
        return token, self._principal(row, _token_hash(token))

    async def authenticate(self, token: str) -> Principal:
        if not token or len(token) > 200:
            raise AuthFailed("令牌无效")
        key = _token_hash(token)
        hit = self._cache.get(key)
        now = time.monotonic()
        idle_seconds = self.settings.staff_idle_minutes * 60
        if hit is not None and hit[0] > now:
            if not (hit[1].is_staff and now - self._seen.get(key, now) > idle_seconds):
                self._seen[key] = now
                return hit[1]
            self._cache.pop(key, None)  # check idleness against storage below
        wall = dt.datetime.now(dt.UTC)
        idle = dt.timedelta(minutes=self.settings.staff_idle_minutes)
        found = await self.accounts.by_session(key, wall)
        if found is None:
            self._cache.pop(key, None)
            raise AuthFailed("令牌无效或已过期，请重新登录")
        row, last_seen = found
        seen_here = self._seen.get(key)
        if seen_here is not None:
            last_seen = max(last_seen, wall - dt.timedelta(seconds=now - seen_here))
        if row.roles & STAFF_ROLES and wall - last_seen > idle:
            await self.accounts.revoke_session(key, wall)
            raise AuthFailed("会话空闲超时，请重新登录 (idle session expired)")
        await self.accounts.touch_session(key, wall)
        principal = self._principal(row, key)
        if len(self._cache) > 100_000:
            self._cache.clear()
            self._seen.clear()
        self._cache[key] = (now + self.settings.cache_seconds, principal)
        self._seen[key] = now
        return principal

    async def logout(self, principal: Principal, *, ip: str | None = None) -> None:
        if principal.token_hash is not None:
            await self.accounts.revoke_session(principal.token_hash, dt.datetime.now(dt.UTC))
            self._cache.pop(principal.token_hash, None)
        await self._audit("auth.logout", principal.account_id, Outcome.OK, None, ip, {})

    async def disable(self, account_id: str, *, by: Principal, ip: str | None = None) -> list[str]:
        """Disable an account and revoke its sessions; returns the revoked token hashes."""
        hashes = await self.accounts.disable(account_id, dt.datetime.now(dt.UTC))
        for h in hashes:
            self._cache.pop(h, None)
        await self._audit("account.disable", account_id, Outcome.OK, None, ip, {"by": by.account_id})
        return hashes

    # ---- accounts -----------------------------------------------------------------------------

    async def create_accounts(self, specs: Iterable[NewAccount], *, enforce_strength: bool = True) -> list[str]:
        """Create accounts (all or none); returns their ids."""
        rows = []
        for spec in specs:
            role_set = frozenset(spec.roles)
            if not _LOGIN.match(spec.login):
                raise IdentityInvalid(f"login {spec.login!r} must be 3-64 letters, digits or _.@+-")
            known = self.known_roles()
            unknown = role_set - known
            if not role_set or unknown:
                raise IdentityInvalid(
                    f"roles must be a non-empty subset of {', '.join(sorted(known))}; got {sorted(role_set)}"
                )
            if not spec.display_name.strip() or len(spec.display_name) > 100:
                raise IdentityInvalid("display_name must be 1-100 characters")
            password_hash = None
            if spec.password is not None:
                if len(spec.password) < 8:
                    raise IdentityInvalid(f"password for {spec.login!r} must have at least 8 characters")
                problem = password_problem(spec.password, spec.login) if role_set & STAFF_ROLES else None
                if enforce_strength and problem:
                    raise IdentityInvalid(f"{spec.login}: {problem}")
                password_hash = await trio.to_thread.run_sync(hash_password, spec.password)
            phone_enc = phone_idx = None
            if spec.phone is not None:
                phone = normalise_phone(spec.phone)
                phone_enc = self.keyring.seal(phone, field="accounts.phone")
                phone_idx = self.keyring.blind_index(phone, field="accounts.phone")
            totp_enc = None
            if spec.totp_secret is not None:
                totp_enc = self.keyring.seal(spec.totp_secret, field="accounts.totp_secret")
            name = spec.display_name.strip()
            name_enc = listed = None
            if is_person(role_set):  # a person's real name is personal data; staff names are public
                name_enc, listed = self.keyring.seal(name, field=NAME_FIELD), mask_name(name)
            rows.append(
                AccountRow(
                    id=uuid.uuid4().hex[:16], login=spec.login, display_name=name,
                    roles=role_set, password_hash=password_hash, disabled=False, phone_enc=phone_enc,
                    phone_idx=phone_idx, totp_secret_enc=totp_enc, display_name_enc=name_enc, listed_name=listed,
                )
            )
        await self.accounts.insert(rows)
        return [r.id for r in rows]

    async def seal_people_names(self) -> int:
        """Seal the names of people's accounts written before names were sealed (migration 0014),
        leaving their masked form in ``display_name``; returns how many were sealed. Run at start-up."""
        sealed, after = 0, ""
        while batch := await self.accounts.plain_names(after):
            after = batch[-1][0]
            people = [(account_id, name, mask_name(name)) for account_id, roles, name in batch if is_person(roles)]
            if people:
                sealed += await self.accounts.seal_names(people)
        return sealed

    async def _audit(
        self, action: str, target: str, outcome: Outcome, row: AccountRow | None, ip: str | None, detail: dict[str, str]
    ) -> None:
        await self.audit.append(
            AuditEntry(
                action=action, target=f"account/{target}", outcome=outcome,
                actor_id=row.id if row is not None else None,
                actor_roles=sorted(row.roles) if row is not None else (), source_ip=ip, detail=detail,
            )
        )

    def _principal(self, row: AccountRow, token_hash: str | None) -> Principal:
        table = self.roles.permissions if self.roles is not None else None
        return Principal(
            row.id, row.login, row.display_name, row.roles, role_permissions(row.roles, table), token_hash,
            row.verified,
        )

    def forget_all(self) -> None:
        """Drop every cached session (a role's permissions changed)."""
        self._cache.clear()

    def known_roles(self) -> set[str]:
        return set(self.roles.roles) if self.roles is not None else set(ROLES)

    def forget(self, account_id: str) -> None:
        """Drop cached sessions of an account (its verification or roles changed)."""
        for key, (_, principal) in list(self._cache.items()):
            if principal.account_id == account_id:
                del self._cache[key]


def _log_alarm(level: str, text: str) -> None:
    log.error("ALARM %s: %s", level, text)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (argon2.exceptions.VerifyMismatchError, argon2.exceptions.InvalidHashError):
        return False


_DUMMY = _hasher.hash("not-a-real-password")


def _verify_quietly(password: str) -> None:
    _verify(_DUMMY, password)
