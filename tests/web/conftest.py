"""Fixtures of the page tests: the built pages, Chromium, and a hub wired to the SMS simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio

from carehub.http.pages import default_web_dist

from ..identity.test_sign_in import hospital
from ..servers import Server
from .browser import Chromium


@pytest.fixture
def built_pages() -> Path:
    dist = default_web_dist()
    if not (dist / "h5" / "index.html").exists():
        pytest.fail(f"the pages are not built ({dist} is missing): ./scripts/test builds them (npm ci, vite build)")
    return dist


@pytest.fixture
async def chromium() -> AsyncIterator[Chromium]:
    browser = Chromium()
    await browser.start()
    try:
        yield browser
    finally:
        await browser.close()


@pytest.fixture
async def sms_hub(database_url: str, built_pages: Path) -> AsyncIterator[tuple[Server, str]]:
    """CareHub serving the built pages, with the SMS gateway simulator; yields (hub, simulator URL)."""
    with trio.fail_after(240):
        async with hospital(database_url) as (srv, gateway):
            yield srv, gateway


async def sms_code(gateway: str, phone: str, after: int = 0) -> str:
    """The newest code the simulator 'delivered' to ``phone``, waiting for message number ``after + 1``."""
    async with httpx.AsyncClient(base_url=gateway) as http:
        with trio.fail_after(10):
            while True:
                messages = (await http.get("/_sim/messages", params={"phone": phone})).json()["messages"]
                if len(messages) > after:
                    return str(messages[0]["params"]["code"])
                await trio.sleep(0.05)
