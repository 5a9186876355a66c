"""Fixtures of the page tests: the built pages, Chromium, and a hub wired to the SMS simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pyotp
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


#: the demo hospital's staff TOTP secret (README)
STAFF_TOTP_SECRET = "CAREHUBDEMOSTAFFTOTPSECRET234567"


def sign_in_staff(page: Any, url: str, login: str, password: str = "carehub-demo") -> None:
    """On the browser thread: open a staff page ``url`` (it shows the sign-in form) and sign in with TOTP.

    The demo staff share one TOTP secret and a code is accepted once per account, so each login here
    is a different account or waits for the next 30-second step (the hub says "已使用").
    """
    from playwright.sync_api import expect

    page.goto(url)
    page.get_by_label("账号").fill(login)
    page.get_by_label("密码", exact=True).fill(password)
    page.get_by_label("动态验证码").fill(pyotp.TOTP(STAFF_TOTP_SECRET).now())
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_role("button", name="退出")).to_be_visible(timeout=15_000)
