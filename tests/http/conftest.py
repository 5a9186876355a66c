"""An in-process CareHub on a free port, with real HTTP and WebSocket clients."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
from hypercorn.trio import serve as hypercorn_serve

from carehub.app import App, hypercorn_config, open_app
from carehub.bots.client import login
from carehub.config import Config
from carehub.demo import DEMO_PASSWORD


@dataclasses.dataclass
class Server:
    base: str
    app: App

    async def token(self, login_name: str) -> str:
        token, _ = await login(self.base, login_name, DEMO_PASSWORD)
        return token

    async def account_id(self, login_name: str) -> str:
        _, account = await login(self.base, login_name, DEMO_PASSWORD)
        return str(account["id"])

    def http(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.base, headers=headers, timeout=30)


@asynccontextmanager
async def run_server(database_url: str, **overrides: Any) -> AsyncIterator[Server]:
    config = dataclasses.replace(Config(port=0, seed_demo=False, ws_heartbeat_seconds=60), **overrides)
    async with open_app(config, database_url=database_url) as app, trio.open_nursery() as nursery:
        asgi: Any = app.asgi
        binds = await nursery.start(functools.partial(hypercorn_serve, asgi, hypercorn_config(config)))
        yield Server(binds[0], app)
        nursery.cancel_scope.cancel()


@pytest.fixture
async def server(database_url: str) -> AsyncIterator[Server]:
    with trio.fail_after(60):
        async with run_server(database_url) as srv:
            yield srv


@pytest.fixture
def server_factory(database_url: str) -> Callable[..., Any]:
    return functools.partial(run_server, database_url)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    with trio.fail_after(timeout):
        while not await check():
            await trio.sleep(0.05)
