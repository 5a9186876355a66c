"""Bench accounts: created through the admin API and signed in once each (staff with a TOTP code)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import os
import random
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import httpx
import trio

from carehub.bots.client import CallFailed, totp_for

from .report import note


@dataclasses.dataclass(frozen=True)
class Account:
    id: str
    login: str
    token: str


#: The demo hospital's staff TOTP secret (carehub/demo.py): staff sign in with password + TOTP.
DEMO_TOTP_SECRET = "CAREHUBDEMOSTAFFTOTPSECRET234567"
#: Bench accounts signing in per source address (the hub limits sign-ins per client address).
LOGINS_PER_ADDRESS = 20


async def sign_in(url: str, login_name: str, password: str, *, totp_secret: str | None = None,
                  totp_first: bool = False, src: str | None = None, attempts: int = 6) -> tuple[str, dict[str, Any]]:
    """POST /api/v1/auth/login (from source address ``src``); waits out 429s; adds a TOTP code when asked.

    Codes come from :func:`carehub.bots.client.totp_for` (pyotp): the hub accepts each time step
    once, so a second sign-in of the same account in a step takes the next one.
    """
    transport = httpx.AsyncHTTPTransport(local_address=src) if src else None
    body: dict[str, Any] = {"login": login_name, "password": password}
    totp = totp_for(url, login_name, totp_secret) if totp_secret is not None else None
    if totp_first and totp is not None:
        body["totp"] = await totp.code()
    async with httpx.AsyncClient(base_url=url, timeout=60, transport=transport) as http:
        for _attempt in range(attempts):
            response = await http.post("/api/v1/auth/login", json=body)
            if response.status_code == 200:
                data = response.json()
                return data["token"], data["account"]
            if response.status_code == 429:
                await trio.sleep(float(response.headers.get("Retry-After", "5")) + random.random())
                continue
            if response.status_code == 401 and totp is not None:
                body["totp"] = await totp.code()
                continue
            break
    raise CallFailed("auth_failed", f"signing in {login_name!r} failed: {response.status_code} {response.text[:200]}")


class Accounts:
    """Bench accounts ``bench-<run>-<role>-<i>``, created through the admin API and signed in once each.

    The login names the whole role: ``partner``, ``patient`` and ``pharmacist`` share an initial.

    Patients for idle connections and topic subscribers. Conversations (durable, ask) use doctors:
    a patient may post only after real-name verification (face check or ID photo review), which a
    load test cannot do; staff sign in with password + TOTP, whose secret account creation returns.
    """

    def __init__(self, url: str, admin_login: str, admin_password: str, run: str, *, reuse: bool = False,
                 admin_totp_secret: str | None = None, login_net: int = 0) -> None:
        self.url = url
        self.admin_login = admin_login
        self.admin_password = admin_password
        self.admin_totp_secret = admin_totp_secret
        self.run = run
        self.login_net = login_net
        # with --run-id, a later run signs in to the accounts an earlier one created
        self.reuse = reuse
        seed = f"{run}:{admin_password}" if reuse else uuid.uuid4().hex
        self.password = "Bench-" + hashlib.sha256(seed.encode()).hexdigest()[:20]
        self.pools: dict[str, list[Account]] = {}
        self.totp: dict[str, str] = {}  # login -> TOTP secret (staff)
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "carehub-bench"
        self._secrets_file = cache / f"totp-{hashlib.sha256((url + run).encode()).hexdigest()[:16]}.json"
        if reuse and self._secrets_file.exists():
            self.totp.update(json.loads(self._secrets_file.read_text()))
        self._admin: str | None = None
        self._sources = itertools.count()

    def admin_token(self) -> str:
        if self._admin is None:
            self._admin = trio.run(
                functools.partial(sign_in, self.url, self.admin_login, self.admin_password,
                                  totp_secret=self.admin_totp_secret, src=self._source())
            )[0]
        return self._admin

    def ensure(self, n: int, role: str = "patient") -> list[Account]:
        """``n`` signed-in accounts of ``role`` (made the first time they are asked for)."""
        pool = self.pools.setdefault(role, [])
        if len(pool) < n:
            started = time.monotonic()
            first = len(pool)
            pool.extend(trio.run(self.provision, role, first, n, self.admin_token()))
            note(f"created and signed in {role} accounts {first}..{n - 1} in {time.monotonic() - started:.1f} s")
        return pool[:n]

    def _source(self) -> str | None:
        # each group of sign-ins comes from its own loopback address, like people on their own
        # phones, so the hub's per-address sign-in limit applies as it would in life
        if not self.login_net:
            return None
        group = next(self._sources) // LOGINS_PER_ADDRESS
        return f"127.{self.login_net}.{100 + group // 250}.{2 + group % 250}"

    async def provision(self, role: str, first: int, last: int, admin: str) -> list[Account]:
        """Accounts ``first..last-1`` of ``role``: created (or, with ``reuse``, found) and signed in."""
        logins = [f"bench-{self.run}-{role}-{i}" for i in range(first, last)]
        ids: dict[str, str] = {}
        tokens: dict[str, str] = {}
        sign_in_limit = trio.CapacityLimiter(8)  # the hub checks each password (argon2, ~20 ms)

        async def one(name: str, missing_ok: bool = False) -> None:
            async with sign_in_limit:
                try:
                    token, account = await sign_in(self.url, name, self.password, src=self._source(),
                                                   totp_secret=self.totp.get(name), totp_first=name in self.totp)
                except CallFailed:
                    if missing_ok:
                        return
                    raise
                tokens[name] = token
                ids[name] = account["id"]

        if self.reuse:
            async with trio.open_nursery() as nursery:
                for name in logins:
                    nursery.start_soon(one, name, True)
        missing = [name for name in logins if name not in tokens]
        create_limit = trio.CapacityLimiter(4)  # the hub hashes each password (argon2, ~20 ms)

        async def create(chunk: list[str]) -> None:
            async with create_limit:
                body = {"accounts": [{"login": name, "display_name": f"压测 {name}", "roles": [role],
                                      "password": self.password} for name in chunk]}
                response = await http.post("/api/v1/admin/accounts", json=body)
                if response.status_code != 201:
                    raise RuntimeError(f"creating bench accounts failed: {response.status_code} {response.text}")
                data = response.json()
                ids.update(zip(chunk, data["ids"], strict=True))
                for name, uri in (data.get("totp_enrolment") or {}).items():
                    secret = urllib.parse.parse_qs(urllib.parse.urlsplit(uri).query).get("secret")
                    if secret:
                        self.totp[name] = secret[0]

        async with httpx.AsyncClient(base_url=self.url, timeout=300,
                                     headers={"Authorization": f"Bearer {admin}"}) as http:
            async with trio.open_nursery() as nursery:
                for k in range(0, len(missing), 50):
                    nursery.start_soon(create, missing[k : k + 50])
        if self.reuse and self.totp:
            self._secrets_file.parent.mkdir(parents=True, exist_ok=True)
            self._secrets_file.write_text(json.dumps(self.totp))
            self._secrets_file.chmod(0o600)
        async with trio.open_nursery() as nursery:
            for name in missing:
                nursery.start_soon(one, name)
        return [Account(ids[name], name, tokens[name]) for name in logins]

