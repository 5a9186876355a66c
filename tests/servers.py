"""An in-process CareHub on a free port, with real HTTP and WebSocket clients."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio

from carehub.app import App, listen, open_app
from carehub.bots.client import login, totp_for
from carehub.config import Config
from carehub.demo import DEMO_PASSWORD, DEMO_TOTP_SECRET
from carehub.storage.keyring import KeyRing

#: One key ring for the whole run: the template database is seeded (encrypted) with it.
KEYRING = KeyRing.generate()

STAFF_LOGINS = ("admin", "ops", "pharmacist1", *(f"doctor{i}" for i in range(1, 7)))


@dataclasses.dataclass
class Server:
    base: str
    app: App
    _sessions: dict[str, tuple[str, dict[str, Any]]] = dataclasses.field(default_factory=dict)

    async def totp(self, login_name: str) -> str:
        """A fresh TOTP code of a demo staff account (each time step is accepted once)."""
        return await totp_for(self.base, login_name, DEMO_TOTP_SECRET).code()

    async def login(self, login_name: str) -> tuple[str, dict[str, Any]]:
        """Sign a demo account in once per test (staff with password + TOTP)."""
        if login_name not in self._sessions:
            totp = await self.totp(login_name) if login_name in STAFF_LOGINS else None
            self._sessions[login_name] = await login(self.base, login_name, DEMO_PASSWORD, totp=totp)
        return self._sessions[login_name]

    async def token(self, login_name: str) -> str:
        return (await self.login(login_name))[0]

    async def account_id(self, login_name: str) -> str:
        return str((await self.login(login_name))[1]["id"])

    def http(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.base, headers=headers, timeout=30)

    async def notices(self, login_name: str, kind: str, *, count: int = 1, timeout: float = 10) -> list[dict[str, Any]]:
        """The account's inbox notices of ``kind`` (newest first), once at least ``count`` have arrived.

        Notices are posted by the message center after the event's own commit (a durable tell), so a
        test waits for them as a patient's phone would.
        """
        found: list[dict[str, Any]] = []
        async with self.http(await self.token(login_name)) as http:
            with trio.fail_after(timeout):
                while True:
                    answer = await http.get("/api/v1/me/notices", params={"limit": 100})
                    assert answer.status_code == 200, answer.text
                    found = [n for n in answer.json()["items"] if n["kind"] == kind]
                    if len(found) >= count:
                        return found
                    await trio.sleep(0.05)


@asynccontextmanager
async def run_server(
    database_url: str, *, keyring: KeyRing | None = KEYRING, **overrides: Any
) -> AsyncIterator[Server]:
    """CareHub on a free port; ``keyring=None`` makes it load keys as a deployment would."""
    config = dataclasses.replace(Config(port=0, seed_demo=False, ws_heartbeat_seconds=60), **overrides)
    async with open_app(config, database_url=database_url, keyring=keyring) as app, trio.open_nursery() as nursery:
        binds = await nursery.start(listen, app, config)
        yield Server(binds[0], app)
        nursery.cancel_scope.cancel()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    with trio.fail_after(timeout):
        while not await check():
            await trio.sleep(0.05)
