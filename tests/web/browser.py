"""Chromium for the page tests: Playwright's sync API on one thread of its own.

Playwright's async API runs on asyncio, not Trio, so (as in tests/http/test_ops_page.py) the
browser lives in one dedicated thread and each step crosses over with ``trio.to_thread``; the hub
and its simulators stay in the test's Trio run. Debian's chromium, never ``playwright install``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import trio
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Playwright, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
#: a phone as the patient app is used: 390 x 844 CSS pixels, touch, Chinese, Shanghai time
PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True,
    "locale": "zh-CN", "timezone_id": "Asia/Shanghai",
}
#: an office PC (the staff pages)
DESKTOP: dict[str, Any] = {
    "viewport": {"width": 1366, "height": 900}, "locale": "zh-CN", "timezone_id": "Asia/Shanghai",
}

T = TypeVar("T")


class Chromium:
    """One browser; ``run`` executes a function on the browser's own thread."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chromium")
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        #: script errors and console errors (CSP violations among them) of every page opened
        self.problems: list[str] = []

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        future = self._pool.submit(fn, *args)
        return await trio.to_thread.run_sync(future.result, abandon_on_cancel=True)

    async def start(self) -> None:
        def start() -> None:
            # trio-asyncio (the hub's) replaces asyncio's loop policy; outside Trio the replacement is per
            # thread, so this browser thread can have plain asyncio loops for Playwright
            asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
            self._playwright = sync_playwright().start()
            self._browser = self._playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

        if not await trio.Path(CHROMIUM).exists():
            raise RuntimeError(f"browser tests need Debian's chromium at {CHROMIUM}: apt-get install -y chromium "
                               "(scripts/test installs it; never `playwright install`)")
        await self.run(start)

    async def page(self, **context: Any) -> Page:
        """A new page in a context of its own (its own storage: a separate person)."""

        def open_page() -> Page:
            assert self._browser is not None
            ctx: BrowserContext = self._browser.new_context(**context)
            page = ctx.new_page()
            page.on("pageerror", lambda err: self.problems.append(f"script error: {err}"))
            page.on("console", self._console)
            return page

        return await self.run(open_page)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(f"console: {message.text}")

    async def close(self) -> None:
        def stop() -> None:
            if self._browser is not None:
                self._browser.close()
            if self._playwright is not None:
                self._playwright.stop()

        try:
            await self.run(stop)
        finally:
            self._pool.shutdown(wait=False)
