"""The admin console's statistics page (SCH-8, STAT-1, STAT-4) on a PC: what its charts draw is what is stored.

Patients book through the API; the admin opens 统计报表 and the test reads each chart's data from
ECharts itself (``getOption()`` of vue-echarts' component, which the chart's container carries as
``carehubChart``) and compares it with counts queried from the database.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Any

import msgspec
from playwright.sync_api import Page, expect

from ..outpatient.helpers import beijing_now, book, open_session, plan
from ..servers import Server
from .browser import DESKTOP, Chromium
from .conftest import sign_in_staff
from .test_patient_shell import csp_or_script_errors

SHOTS = Path(os.environ.get("CAREHUB_SHOTS_DIR") or "/tmp/a3-shots")

#: a chart's categories and first series, as ECharts holds them
READ_CHART = """el => {
  const option = el.carehubChart.getOption()
  const axis = option.series[0].type === 'pie' ? null : (option.yAxis[0].type === 'category' ? option.yAxis[0]
    : option.xAxis[0])
  return {
    type: option.series[0].type,
    names: axis ? axis.data : option.series[0].data.map(d => d.name),
    values: option.series[0].data.map(d => (typeof d === 'object' ? d.value : d)),
  }
}"""


async def counted(server: Server, sql: str, *args: Any) -> dict[str, int]:
    rows = await server.app.services.db.fetch(sql, *args)
    return {r["name"]: r["n"] for r in rows}


async def test_the_admin_sees_charts_whose_figures_equal_the_stored_bookings(
    chromium: Chromium, sms_hub: tuple[Server, str],
) -> None:
    hub, _ = sms_hub
    day = beijing_now().date() + dt.timedelta(days=1)
    await open_session(hub, "doctor1", plan(day))
    await open_session(hub, "doctor2", plan(day))
    await open_session(hub, "doctor3", msgspec.structs.replace(plan(day), department_id="resp"))
    for patient, doctor in (("patient1", "doctor1"), ("patient2", "doctor1"), ("patient3", "doctor2"),
                            ("patient4", "doctor3")):
        made = await book(hub, patient, doctor, day)
        assert made.status_code == 201, made.text
    month = day.isoformat()[:7]
    first, last = dt.date(day.year, day.month, 1), dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)
    by_department = await counted(
        hub, "SELECT d.name, count(*) AS n FROM bookings b JOIN departments d ON d.id = b.department_id"
        " WHERE b.day >= $1 AND b.day < $2 AND b.status <> 'released' GROUP BY d.name", first, last)
    by_doctor = await counted(
        hub, "SELECT a.display_name AS name, count(*) AS n FROM bookings b JOIN accounts a ON a.id = b.doctor_id"
        " WHERE b.day >= $1 AND b.day < $2 AND b.status <> 'released' GROUP BY a.display_name", first, last)
    resp_doctors = await counted(
        hub, "SELECT a.display_name AS name, count(*) AS n FROM bookings b JOIN accounts a ON a.id = b.doctor_id"
        " WHERE b.day >= $1 AND b.day < $2 AND b.status <> 'released' AND b.department_id = 'resp'"
        " GROUP BY a.display_name", first, last)
    sessions = await counted(
        hub, "SELECT a.display_name AS name, count(*) AS n FROM clinic_sessions s JOIN accounts a ON a.id = s.doctor_id"
        " WHERE s.day >= $1 AND s.day < $2 AND s.status = 'open' GROUP BY a.display_name", first, last)
    assert by_department == {"心血管内科": 3, "呼吸与危重症医学科": 1}  # what the test made, as stored
    page = await chromium.page(**DESKTOP)

    def read(page: Page, name: str) -> dict[str, Any]:
        chart = page.locator(f'[data-chart="{name}"]')
        expect(chart.locator("canvas")).to_be_visible()
        return dict(chart.evaluate(READ_CHART))

    def statistics() -> dict[str, Any]:
        sign_in_staff(page, f"{hub.base}/admin/statistics?from={month}&to={month}", "admin")
        expect(page.get_by_role("heading", name="各科室预约量")).to_be_visible(timeout=15_000)
        expect(page.get_by_role("menuitem", name="预约与支付统计")).to_be_visible()
        expect(page.get_by_text("统计报表")).to_be_visible()
        expect(page.locator('[data-total="bookings"]')).to_have_text(f"{sum(by_department.values()):,}")
        seen = {name: read(page, name) for name in ("departments", "doctors", "sessions", "channels", "trend")}
        page.wait_for_timeout(600)  # the charts' entry animation ends
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "admin-statistics.png"), full_page=True)
        # a filter: one department; the doctors' chart then holds only its doctors
        page.locator(".el-select", has=page.get_by_role("combobox", name="科室")).click()
        page.get_by_role("option", name="呼吸与危重症医学科").click()
        expect(page).to_have_url(re.compile("department=resp"))
        expect(page.locator('[data-total="bookings"]')).to_have_text(f"{sum(resp_doctors.values()):,}")
        seen["resp-doctors"] = read(page, "doctors")
        page.screenshot(path=str(SHOTS / "admin-statistics-resp.png"), full_page=False)
        # a question the hub refuses shows its Chinese reason, not a blank page
        page.goto(f"{hub.base}/admin/statistics?from=2023-01&to=2025-12")
        expect(page.get_by_role("alert").filter(has_text="统计范围最多 24 个月")).to_be_visible()
        return seen

    seen = await chromium.run(statistics)
    pairs = {name: dict(zip(chart["names"], chart["values"], strict=True)) for name, chart in seen.items()}
    assert pairs["departments"] == by_department
    assert pairs["doctors"] == by_doctor
    assert pairs["resp-doctors"] == resp_doctors
    assert pairs["sessions"] == sessions
    assert seen["channels"]["type"] == "pie"
    assert pairs["channels"] == {"患者端(App/公众号)": 4}  # slices of zero are not drawn
    assert pairs["trend"].get(month) == 4 or pairs["trend"].get(day.isoformat()) == 4
    assert csp_or_script_errors(chromium) == []
