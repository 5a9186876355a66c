"""Notices over the real channels, through their simulators: preference order, fallback, retries,
dead letters, no second send to a provider, reminders across a restart, the inbox (MSG-1, MSG-7, OUT-15)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import trio

from carehub.actors.notifier import Preferences
from tests.servers import Server, eventually, run_server

from .conftest import Hospital, start_sims

OPENID = "o-patient1-openid"
ALIPAY_ID = "2088000000000001"


async def bind(hub: Server, login: str, **addresses: str) -> str:
    account_id = await hub.account_id(login)
    for channel, address in addresses.items():
        await hub.app.services.messaging.notices.bind(account_id, channel, address, dt.datetime.now(dt.UTC))
    return account_id


async def settled(hub: Server, notice_id: str, timeout: float = 15) -> dict[str, Any]:
    """The notice once its outside channels are done with it (sent, dead or in-app only)."""
    store = hub.app.services.messaging.notices
    row: dict[str, Any] | None = None

    async def done() -> bool:
        nonlocal row
        row = await store.get(notice_id)
        return row is not None and row["status"] in ("sent", "dead", "in_app")

    await eventually(done, timeout)
    assert row is not None
    return row


async def notify(hub: Server, account_id: str, kind: str = "report.ready", **values: str) -> str:
    reply = await hub.app.services.messaging.notifier.notify(
        account_id, kind, {"patient": "张*三", "report": "血常规", "department": "检验科", **values})
    return str(reply["notice_id"])


async def test_a_notice_goes_out_on_the_first_channel_the_patient_prefers_and_is_reported_delivered(
    hospital: Hospital,
) -> None:
    hub, sims = hospital.hub, hospital.sims
    account_id = await bind(hub, "patient1", wechat=OPENID)
    notice_id = await notify(hub, account_id)
    row = await settled(hub, notice_id)
    assert (row["status"], row["channel"], row["attempts"]) == ("sent", "wechat", 1)
    (sent,) = (await sims.get("wechat", "/_sim/messages", touser=OPENID))["messages"]
    assert sent["client_msg_id"] == f"{notice_id}:wechat" and sent["data"]["thing1"] == "检查检验报告已出"
    assert sent["url"].endswith("/h5/me/notices")  # the deep link, made absolute
    assert not (await sims.get("sms", "/_sim/messages"))["messages"]  # one channel is enough
    # the TEMPLATESENDJOBFINISH push came back signed and is stored on the notice
    await eventually(lambda: _reported(hub, notice_id, "delivered"))


async def _reported(hub: Server, notice_id: str, report: str) -> bool:
    row = await hub.app.services.messaging.notices.get(notice_id)
    return row is not None and row["report"] == report


async def test_someone_who_does_not_follow_the_service_account_gets_an_sms_instead(hospital: Hospital) -> None:
    hub, sims = hospital.hub, hospital.sims
    account_id = await bind(hub, "patient1", wechat=OPENID)
    await sims.post("wechat", "/_sim/followers", {"openid": OPENID, "following": False})
    notice_id = await notify(hub, account_id)
    row = await settled(hub, notice_id)
    assert (row["status"], row["channel"]) == ("sent", "sms")
    assert "43004" in row["last_error"]  # why WeChat was passed over
    (sms,) = (await sims.get("sms", "/_sim/messages", phone="13800138001"))["messages"]
    assert "血常规" in sms["content"]


async def test_a_busy_provider_is_retried_with_back_off_and_the_notice_goes_out_on_the_second_try(
    hospital: Hospital,
) -> None:
    hub, sims = hospital.hub, hospital.sims
    account_id = await bind(hub, "patient1", wechat=OPENID)
    await sims.post("wechat", "/_sim/faults", {"api": "template", "count": 1, "errcode": -1})
    notice_id = await notify(hub, account_id)
    row = await settled(hub, notice_id)
    assert (row["status"], row["channel"], row["attempts"]) == ("sent", "wechat", 2)
    assert len((await sims.get("wechat", "/_sim/messages", touser=OPENID))["messages"]) == 1


async def test_a_notice_no_channel_can_take_is_a_dead_letter_with_its_reason_and_ops_can_resend_it(
    hospital: Hospital,
) -> None:
    hub, sims = hospital.hub, hospital.sims
    account_id = await bind(hub, "patient1", wechat=OPENID)
    await sims.post("wechat", "/_sim/faults", {"api": "template", "count": 1, "errcode": 40037})  # bad template
    await sims.post("sms", "/_sim/faults", {"kind": "error", "count": 1, "code": "isv.MOBILE_NUMBER_ILLEGAL"})
    notice_id = await notify(hub, account_id)
    row = await settled(hub, notice_id)
    assert row["status"] == "dead" and "MOBILE_NUMBER_ILLEGAL" in row["last_error"]
    async with hub.http(await hub.token("ops")) as ops:
        listed = (await ops.get("/api/v1/ops/notices/dead-letters")).json()["items"]
        assert [(n["id"], n["account_id"]) for n in listed if n["id"] == notice_id] == [(notice_id, account_id)]
        assert "MOBILE_NUMBER_ILLEGAL" in next(n for n in listed if n["id"] == notice_id)["reason"]
        resent = await ops.post(f"/api/v1/ops/notices/{notice_id}/resend")
        assert resent.status_code == 200, resent.text
    row = await settled(hub, notice_id)
    assert (row["status"], row["channel"]) == ("sent", "wechat")
    # the patient still has the notice in the app, once
    assert [n["id"] for n in await hub.notices("patient1", "report.ready")] == [notice_id]


async def test_a_send_whose_answer_was_lost_is_not_sent_twice_to_the_provider(hospital: Hospital) -> None:
    hub, sims = hospital.hub, hospital.sims
    account_id = await hub.account_id("patient1")  # no WeChat binding: SMS, which has no idempotency key
    await sims.post("sms", "/_sim/faults", {"kind": "timeout", "count": 1, "accept": True})
    notice_id = await notify(hub, account_id)
    row = await settled(hub, notice_id)
    assert (row["status"], row["channel"]) == ("sent", "sms")
    # the retry asked the provider (QuerySendDetails by OutId) and found the first send: one message
    assert len((await sims.get("sms", "/_sim/messages", phone="13800138001"))["messages"]) == 1

    wechat_account = await bind(hub, "patient2", wechat="o-patient2-openid")
    await sims.post("wechat", "/_sim/faults", {"api": "template", "count": 1, "hang": True, "accept": True})
    notice_id = await notify(hub, wechat_account)
    row = await settled(hub, notice_id)
    assert (row["status"], row["channel"]) == ("sent", "wechat")
    # WeChat recognised the repeated client_msg_id: the patient got it once
    assert len((await sims.get("wechat", "/_sim/messages", touser="o-patient2-openid"))["messages"]) == 1


async def test_quiet_hours_hold_the_outside_channels_and_a_critical_alert_goes_through_them(
    hospital: Hospital,
) -> None:
    hub, sims = hospital.hub, hospital.sims
    account_id = await bind(hub, "patient1", wechat=OPENID)
    now = dt.datetime.now(dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=8)))
    start = now.hour * 60 + now.minute
    await hub.app.services.messaging.notifier.set_preferences(
        account_id, Preferences(channels=["wechat", "sms"], quiet_start=(start - 60) % 1440,
                                quiet_end=(start + 60) % 1440))
    notice_id = await notify(hub, account_id)
    await trio.sleep(1.0)
    row = await hub.app.services.messaging.notices.get(notice_id)
    assert row is not None and row["status"] == "deferred"
    assert not (await sims.get("wechat", "/_sim/messages"))["messages"]
    assert [n["id"] for n in await hub.notices("patient1", "report.ready")] == [notice_id]  # in the app at once
    doctor = await bind(hub, "doctor1", wechat="o-doctor1-openid")
    await hub.app.services.messaging.notifier.set_preferences(
        doctor, Preferences(channels=["wechat"], off={"clinical": ["wechat"]}, quiet_start=(start - 60) % 1440,
                            quiet_end=(start + 60) % 1440))
    alert = (await hub.app.services.messaging.notifier.notify(doctor, "critical.value", {
        "doctor": "李建国", "patient": "张*三", "item": "血钾", "value": "6.8 mmol/L", "flag": "HH",
        "alert_id": "A1"}))["notice_id"]
    row = await settled(hub, alert)
    assert (row["status"], row["channel"], row["critical"]) == ("sent", "wechat", True)


async def test_a_retry_due_while_the_hub_was_down_is_sent_after_the_restart(database_url: str) -> None:
    async with trio.open_nursery() as nursery:
        sims, config = await start_sims(nursery)
        await sims.post("wechat", "/_sim/faults", {"api": "template", "count": 1, "errcode": -1})
        async with run_server(database_url, **config) as hub:
            account_id = await bind(hub, "patient1", wechat=OPENID)
            notice_id = await notify(hub, account_id)
            await eventually(lambda: _status(hub, notice_id, "retrying"))
        # the hub is down while the retry falls due; a new one on the same database sends it
        await trio.sleep(2.0)
        async with run_server(database_url, **config) as hub:
            row = await settled(hub, notice_id)
            assert (row["status"], row["channel"], row["attempts"]) == ("sent", "wechat", 2)
        assert len((await sims.get("wechat", "/_sim/messages", touser=OPENID))["messages"]) == 1
        nursery.cancel_scope.cancel()


async def _status(hub: Server, notice_id: str, status: str) -> bool:
    row = await hub.app.services.messaging.notices.get(notice_id)
    return row is not None and row["status"] == status


async def test_the_inbox_pages_counts_and_keeps_read_marks_on_the_server(hospital: Hospital) -> None:
    hub = hospital.hub
    account_id = await hub.account_id("patient3")
    ids = [await notify(hub, account_id, report=f"报告{i}") for i in range(5)]
    async with hub.http(await hub.token("patient3")) as http:
        first = (await http.get("/api/v1/me/notices", params={"limit": 3})).json()
        assert [n["id"] for n in first["items"]] == ids[::-1][:3] and first["unread"] == 5
        second = (await http.get("/api/v1/me/notices", params={"limit": 3, "before": first["next"]})).json()
        assert [n["id"] for n in second["items"]] == ids[::-1][3:] and second["next"] is None
        marked = (await http.post("/api/v1/me/notices/read", json={"ids": ids[:2]})).json()
        assert (marked["marked"], marked["unread"]) == (2, 3)
        unread = (await http.get("/api/v1/me/notices", params={"unread": "1"})).json()["items"]
        assert sorted(n["id"] for n in unread) == sorted(ids[2:])
        # another patient cannot mark them, nor page from them
        async with hub.http(await hub.token("patient4")) as other:
            assert (await other.post("/api/v1/me/notices/read", json={"all": True})).json()["marked"] == 0
            assert (await other.get("/api/v1/me/notices", params={"before": ids[0]})).status_code == 404
        assert (await http.post("/api/v1/me/notices/read", json={"all": True})).json()["unread"] == 0
        assert (await http.post("/api/v1/me/notices/read", json={})).status_code == 422
        assert (await http.get("/api/v1/me/notices", params={"limit": "x"})).status_code == 400


async def test_a_reminder_due_while_the_hub_was_down_is_posted_after_the_restart_and_flagged_late(
    database_url: str,
) -> None:
    """MSG-4/5/7: scheduled reminders survive restarts; one that fell due meanwhile is posted late, not dropped;
    one whose reason went away (the medicine was picked up) is never posted."""
    async with run_server(database_url) as hub:
        account_id = await hub.account_id("patient1")
        notifier = hub.app.services.messaging.notifier
        soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.5)
        revisit = await notifier.notify(account_id, "revisit.due", {
            "patient": "张*三", "doctor": "李建国", "department": "心内科", "date": "12月20日"}, at=soon)
        pickup = await notifier.notify(account_id, "medicine.ready", {
            "patient": "张*三", "window": "3号窗口", "guidance": "饭后服用"}, at=soon)
        assert revisit["status"] == pickup["status"] == "scheduled"
        async with hub.http(await hub.token("patient1")) as http:
            assert (await http.get("/api/v1/me/notices")).json()["total"] == 0  # not in the inbox before its time
        assert (await notifier.cancel_scheduled(account_id, pickup["notice_id"], "已取药"))["status"] == "cancelled"
    await trio.sleep(3.0)  # the hub is down when the reminder falls due
    async with run_server(database_url) as hub:
        (notice,) = await hub.notices("patient1", "revisit.due")
        assert notice["id"] == revisit["notice_id"] and notice["late"] is True and "12月20日" in notice["body"]
        await trio.sleep(0.5)
        async with hub.http(await hub.token("patient1")) as http:
            kinds = [n["kind"] for n in (await http.get("/api/v1/me/notices")).json()["items"]]
        assert "medicine.ready" not in kinds
