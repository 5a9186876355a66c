"""The live ops dashboard at /ops, driven in headless Chromium while bots chat over the WebSocket.

Playwright's async API runs on asyncio, not Trio, so the browser lives in one dedicated thread
(its sync API is bound to the thread that started it) and each step crosses over with
``trio.to_thread.run_sync``; the server and the bots stay in the test's Trio run.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from carehub.bots.people import run_bots
from carehub.demo import DEMO_PASSWORD
from carehub.http.gateway import bye_frame
from carehub.hub import Outbound

from .conftest import Server, eventually

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]

T = TypeVar("T")


def chat(a: str, b: str) -> str:
    return "conversation/" + "~".join(sorted([a, b]))


class Dashboard:
    """One browser tab on the dashboard; every method runs on the browser's own thread."""

    def __init__(self, pool: ThreadPoolExecutor, playwright: Playwright, browser: Browser, page: Page) -> None:
        self._pool = pool
        self._playwright = playwright
        self._browser = browser
        self.page = page
        self.requests: list[str] = []
        self.script_errors: list[str] = []
        page.on("request", lambda req: self.requests.append(req.url))
        page.on("pageerror", lambda err: self.script_errors.append(str(err)))

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        future = self._pool.submit(fn, *args)
        return await trio.to_thread.run_sync(future.result, abandon_on_cancel=True)

    async def sign_in(self, server: Server, login_name: str) -> None:
        code = await server.totp(login_name)

        def steps() -> None:
            self.page.goto(server.base + "/ops")
            self.page.fill("#login-name", login_name)
            self.page.fill("#login-password", DEMO_PASSWORD)
            self.page.fill("#login-totp", code)
            self.page.click("#login-submit")

        await self.run(steps)

    async def figure(self, element_id: str) -> float:
        """A figure's raw value (the element's data-value); -1 until the first snapshot filled it."""
        raw = await self.run(self.page.get_attribute, f"#{element_id}", "data-value")
        return float(raw) if raw else -1.0

    async def wait_for(self, expression: str, arg: Any = None, timeout: float = 10) -> None:
        """Wait until a JavaScript predicate holds in the page."""
        await self.run(lambda: self.page.wait_for_function(expression, arg=arg, timeout=timeout * 1000))

    async def actor_addresses(self) -> list[str]:
        return await self.run(
            self.page.eval_on_selector_all, "#actor-rows tr[data-address]", "rows => rows.map(r => r.dataset.address)"
        )

    async def search(self, text: str) -> None:
        await self.run(self.page.fill, "#actor-search", text)
        await self.wait_for("s => document.getElementById('actor-rows').dataset.search === s", text)

    async def text(self, selector: str) -> str:
        return await self.run(self.page.inner_text, selector)

    async def screenshot(self, path: Path) -> None:
        await self.run(lambda: self.page.screenshot(path=str(path), full_page=True))

    def _close(self) -> None:
        self._browser.close()
        self._playwright.stop()


@pytest.fixture
def chromium() -> str:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"browser tests need Debian's chromium at {CHROMIUM}: apt-get install -y chromium "
                    "(scripts/test installs it; never `playwright install`)")
    return CHROMIUM


@pytest.fixture
async def dashboard(chromium: str) -> AsyncIterator[Dashboard]:
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chromium")

    def start() -> Dashboard:
        # trio-asyncio (the server's) replaces asyncio's loop policy; outside Trio the replacement is
        # per thread, so this browser thread can have plain asyncio loops for Playwright
        asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
        playwright = sync_playwright().start()
        try:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1360, "height": 900}, locale="zh-CN")
        except BaseException:
            playwright.stop()
            raise
        page.set_default_timeout(10_000)
        return Dashboard(pool, playwright, browser, page)

    try:
        with trio.fail_after(60):
            ui = await trio.to_thread.run_sync(pool.submit(start).result, abandon_on_cancel=True)
        try:
            yield ui
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(30):
                await ui.run(ui._close)
        assert not ui.script_errors, f"the page's script failed: {ui.script_errors}"
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


async def test_the_dashboard_shows_live_figures_that_move_while_bots_chat(
    server: Server, dashboard: Dashboard, tmp_path: Path
) -> None:
    ui = dashboard
    with trio.fail_after(90):
        await ui.sign_in(server, "ops")
        await ui.wait_for("document.getElementById('status').dataset.state === 'live'")
        await ui.wait_for("document.getElementById('messages-total').dataset.value !== undefined"
                          " && document.getElementById('messages-total').dataset.value !== ''")
        messages_before = await ui.figure("messages-total")
        assert messages_before >= 0
        assert await ui.figure("connections") == 1, "only the dashboard itself is connected"
        assert await ui.figure("actors-total") >= 0 and await ui.figure("mailbox-depth") >= 0

        bots_done = trio.Event()
        exit_codes: list[int] = []

        async def bots() -> None:
            exit_codes.append(await run_bots(server.base, patients=4, doctors=2, duration=3, interval=0.05))
            bots_done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(bots)

            async def bots_connected() -> bool:
                assert not bots_done.is_set(), "the bots finished before the dashboard showed their connections"
                return await ui.figure("connections") >= 1 + 4 + 2

            await eventually(bots_connected, timeout=15)
            assert await ui.figure("accounts-online") >= 1 + 4 + 2
            await bots_done.wait()
        assert exit_codes == [0]

        async def messages_counted() -> bool:
            return await ui.figure("messages-total") > messages_before + 20

        await eventually(messages_counted)

        async def bots_gone() -> bool:
            return await ui.figure("connections") == 1

        await eventually(bots_gone)

        patients = [await server.account_id(f"patient{i}") for i in range(1, 5)]
        doctors = [await server.account_id(f"doctor{i}") for i in range(1, 3)]
        # patient i chats with doctor bot i % 2
        conversations = {chat(p, doctors[i % 2]) for i, p in enumerate(patients)}

        async def conversations_listed() -> bool:
            return conversations <= set(await ui.actor_addresses())

        await eventually(conversations_listed)
        assert await ui.figure("actors-total") >= len(conversations)
        await ui.wait_for("document.querySelector('#actors-by-kind tr[data-kind=\"conversation\"]') !== null")

        await ui.search(patients[0])
        assert await ui.actor_addresses() == [chat(patients[0], doctors[0])]
        await ui.search("conversation/")
        assert set(await ui.actor_addresses()) == conversations
        await ui.search("没有这个")
        assert await ui.actor_addresses() == []
        assert "没有匹配" in await ui.text("#actor-rows")

        await ui.search("")
        await ui.screenshot(tmp_path / "ops.png")
    assert not [url for url in ui.requests if "/api/v1/ops/snapshot" in url], "figures come over the WebSocket"


async def test_a_patient_signing_in_is_told_the_dashboard_needs_the_ops_role(
    server: Server, dashboard: Dashboard
) -> None:
    ui = dashboard
    with trio.fail_after(60):
        await ui.sign_in(server, "patient1")
        await ui.wait_for("!document.getElementById('page-error').hidden")
        message = await ui.text("#page-error")
        assert "没有运维权限" in message and "ops" in message
        assert await ui.run(ui.page.is_hidden, "#dashboard")
        assert await ui.run(ui.page.get_attribute, "#status", "data-state") == "forbidden"
        assert await ui.figure("messages-total") == -1, "no figures were shown"


async def test_the_dashboard_comes_back_when_the_server_says_bye(server: Server, dashboard: Dashboard) -> None:
    ui = dashboard
    services = server.app.services
    with trio.fail_after(60):
        await ui.sign_in(server, "ops")
        await ui.wait_for("document.getElementById('status').dataset.state === 'live'")
        opened = services.gateway.stats.connections_opened
        # what a restarting server sends (Gateway.drain), with a short, known delay
        bye = Outbound({**bye_frame("服务重启 (server restarting)").frame, "reconnect_after_ms": 1500})
        for conn in list(services.gateway.connections.values()):
            conn.close(1012, "server restarting", bye)
        await ui.wait_for("document.getElementById('status').dataset.state === 'reconnecting'")
        left = trio.current_time()
        await ui.wait_for("document.getElementById('status').dataset.state === 'live'")
        assert trio.current_time() - left >= 1.0, "waited as the bye frame said"
        assert services.gateway.stats.connections_opened == opened + 1
        await ui.wait_for("document.getElementById('connections').dataset.value === '1'")


async def test_ops_can_release_a_quarantined_actor_from_the_dashboard(
    server_factory: Callable[..., Any], dashboard: Dashboard
) -> None:
    ui = dashboard
    async with server_factory(actor_plugins="tests.hub.kinds:Counter", crash_limit=2) as srv:
        with trio.fail_after(60):
            token = await srv.token("ops")
            async with srv.http(token) as http:
                for _ in range(2):
                    crashed = await http.post("/api/v1/call", json={"to": "counter/ward-7", "type": "Explode"})
                    assert crashed.status_code == 500, crashed.text
                refused = await http.post("/api/v1/call", json={"to": "counter/ward-7", "type": "Get"})
                assert refused.json()["error"]["code"] == "actor_quarantined"

            await ui.sign_in(srv, "ops")
            await ui.wait_for("document.getElementById('quarantined-count').dataset.value === '1'")
            assert "counter/ward-7" in await ui.text("#quarantined-rows")
            assert "counter/ward-7" in await ui.text("#alarms")
            assert await ui.figure("crashes-total") == 2

            await ui.run(ui.page.click, "#quarantined-rows button[data-address='counter/ward-7']")
            await ui.wait_for("document.getElementById('quarantined-count').dataset.value === '0'")
            assert "已解除隔离" in await ui.text("#notice")
            async with srv.http(token) as http:
                answered = await http.post("/api/v1/call", json={"to": "counter/ward-7", "type": "Get"})
                assert answered.status_code == 200 and answered.json()["result"] == 0
