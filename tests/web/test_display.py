"""The hall screen (/display/<department>, 1920x1080) in Chromium: a call shows within a second of
the doctor pressing 叫下一位, with the next in line; after the hub restarts (same database and
port) the screen shows the next call by itself, without a reload (OUT-12; issue 17).

The screen has no account, so it long-polls GET /api/v1/display/<department>/calls/wait
(web/README.md says why); the doctor works in the workstation page.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import trio
from playwright.sync_api import expect

from ..servers import run_server
from .browser import DESKTOP, Chromium
from .conftest import sign_in_staff
from .queue_helpers import book_and_check_in, open_tonight
from .test_patient_shell import csp_or_script_errors

SHOTS = Path("/tmp/d-shots")
HALL_SCREEN = {"viewport": {"width": 1920, "height": 1080}, "locale": "zh-CN", "timezone_id": "Asia/Shanghai"}

#: notes (Date.now()) when the screen's 当前叫号 first reads `label`
WATCH = """(label) => {
  delete window.__seenAt
  const check = () => {
    const el = document.querySelector('[data-testid=now-calling]')
    if (el && el.textContent.trim() === label && window.__seenAt === undefined) window.__seenAt = Date.now()
  }
  new MutationObserver(check).observe(document.body, { subtree: true, childList: true, characterData: true })
  check()
}"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_the_hall_screen_shows_calls_at_once_and_carries_on_after_a_restart(
    chromium: Chromium, database_url: str, built_pages: Path
) -> None:
    port = free_port()
    doctor = await chromium.page(**DESKTOP)
    screen = await chromium.page(**HALL_SCREEN)
    with trio.fail_after(240):
        async with run_server(database_url, port=port) as hub:
            day = await open_tonight(hub, "doctor2")
            for login in ("patient1", "patient4", "patient2"):
                await book_and_check_in(hub, login, "doctor2", day)

            def first_call() -> float:
                SHOTS.mkdir(exist_ok=True)
                screen.goto(hub.base + "/display/cardio")
                expect(screen.get_by_role("heading", name="心血管内科 叫号")).to_be_visible()
                expect(screen.get_by_text("暂无叫号，请耐心等候")).to_be_visible()
                sign_in_staff(doctor, hub.base + "/doctor/queue", "doctor2")
                expect(doctor.locator(".el-card").filter(has_text="候诊患者").locator("tbody tr")).to_have_count(3)
                screen.evaluate(WATCH, "张*")
                screen.evaluate("window.__sameDocument = true")
                pressed = time.time() * 1000
                doctor.get_by_role("button", name="叫下一位").click()
                screen.wait_for_function("() => window.__seenAt !== undefined", timeout=5000)
                elapsed = float(screen.evaluate("window.__seenAt")) - pressed
                expect(screen.get_by_text("到 心内科3诊室 就诊")).to_be_visible()
                expect(screen.get_by_test_id("next-up")).to_have_text("赵*、李*")
                screen.screenshot(path=str(SHOTS / "display-calling.png"))
                return elapsed

            elapsed = await chromium.run(first_call)
            assert elapsed < 1000, f"the call reached the screen {elapsed:.0f} ms after the press"

        def waiting_for_the_hub() -> None:
            expect(screen.get_by_role("status")).to_contain_text("连接中断", timeout=15_000)
            expect(screen.get_by_test_id("now-calling")).to_have_text("张*")  # the last call stays up
            screen.screenshot(path=str(SHOTS / "display-offline.png"))

        await chromium.run(waiting_for_the_hub)

        async with run_server(database_url, port=port) as hub:

            def after_restart() -> float:
                screen.evaluate(WATCH, "赵*")
                expect(doctor.get_by_test_id("calling")).to_contain_text("张*")
                pressed = time.time() * 1000
                doctor.get_by_role("button", name="叫下一位").click()
                expect(doctor.get_by_test_id("calling")).to_contain_text("赵*", timeout=15_000)
                screen.wait_for_function("() => window.__seenAt !== undefined", timeout=15_000)
                assert screen.evaluate("window.__sameDocument") is True, "the screen was not reloaded"
                expect(screen.get_by_role("status")).to_have_count(0)
                expect(screen.get_by_test_id("next-up")).to_have_text("李*")
                screen.screenshot(path=str(SHOTS / "display-after-restart.png"))
                return float(screen.evaluate("window.__seenAt")) - pressed

            late = await chromium.run(after_restart)
            assert late < 5000, f"after the restart the call took {late:.0f} ms"
    assert csp_or_script_errors(chromium) == []
