"""The notifier actor's pure ``handle()``: plans, quiet hours, retries, fallback, dead letters (MSG-1, OUT-15, MSG-7).
No PostgreSQL, no Trio server."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest

from carehub.actors.notifier import (
    MAX_ATTEMPTS,
    NOTICE,
    CancelScheduled,
    Fire,
    GetPreferences,
    NoticeStatus,
    Notifier,
    NotifierState,
    Post,
    Preferences,
    Resend,
    Schedule,
    Send,
    SendNow,
    SendResult,
    SetPreferences,
    backoff,
    in_quiet_hours,
)
from carehub.hub import SYSTEM, Caller, Context, Decision, InvalidTransition, Refusal, make_address

N = Notifier()
ACCOUNT = "acc-1"
#: 10:00 in Shanghai
DAY = dt.datetime(2026, 12, 4, 2, 0, tzinfo=dt.UTC)
#: 23:30 in Shanghai
NIGHT = dt.datetime(2026, 12, 4, 15, 30, tzinfo=dt.UTC)


def ctx(now: dt.datetime = DAY, caller: Caller = SYSTEM) -> Context:
    return Context(make_address("notifier", ACCOUNT), ACCOUNT, now, caller)


def post(notice_id: str = "n1", *, category: str = "visit", critical: bool = False, kind: str = "booking.confirmed",
         channels: list[str] | None = None) -> Post:
    return Post(notice_id, kind, category, "预约成功", "张*三，您已成功预约", link="/h5/bookings/b1", critical=critical,
                channels=channels)


def run(state: NotifierState, message: msgspec.Struct,
        now: dt.datetime = DAY) -> tuple[NotifierState, Decision[NotifierState]]:
    d = N.handle(state, message, ctx(now))
    return d.state, d


def sends(d: Decision[NotifierState]) -> list[tuple[str, str, int]]:
    return [(t.message.channel, t.message.notice_id, t.message.attempt) for t in d.tells if isinstance(t.message, Send)]


def status(d: Decision[NotifierState]) -> str | None:
    values = [r.values.get("status") for r in d.records if r.table == "notices"]
    return values[-1] if values else None


def test_a_notice_is_in_the_inbox_on_the_stream_and_on_its_way_to_the_first_channel_in_one_decision() -> None:
    _, d = run(N.initial(ACCOUNT), post())
    assert [(x.account_id, x.type, x.body["title"]) for x in d.deliveries] == [(ACCOUNT, "notice", "预约成功")]
    assert d.deliveries[0].sensitive  # personal text: encrypted at rest in the stream
    assert d.records[0].table == "notices" and d.records[0].table in N.projections
    assert d.records[0].values["status"] == "sending" and d.records[0].values["plan"] == "wechat,sms"
    assert sends(d) == [("wechat", "n1", 0)]
    assert d.tells[0].to == make_address("send", "n1:wechat:0")
    assert d.reply == {"notice_id": "n1", "status": "sending", "plan": ["wechat", "sms"]}


def test_a_repeated_post_changes_nothing() -> None:
    state, _ = run(N.initial(ACCOUNT), post())
    again, d = run(state, post())
    assert not d.writes and d.reply == {"notice_id": "n1", "duplicate": True} and again == state


def test_a_category_switched_off_keeps_the_notice_in_the_app_only() -> None:
    prefs = Preferences(channels=["wechat", "sms"], off={"visit": ["wechat", "sms"]})
    state, _ = run(N.initial(ACCOUNT), SetPreferences(prefs))
    state, d = run(state, post())
    assert status(d) == "in_app" and not sends(d) and len(d.deliveries) == 1 and not state.pending
    state, d = run(state, post("n2", category="payment"))
    assert sends(d) == [("wechat", "n2", 0)]  # other categories still go out


def test_quiet_hours_defer_the_outside_channels_until_they_end_but_not_the_inbox() -> None:
    prefs = Preferences(quiet_start=22 * 60, quiet_end=7 * 60)
    state, _ = run(N.initial(ACCOUNT), SetPreferences(prefs))
    assert in_quiet_hours(prefs, NIGHT) and not in_quiet_hours(prefs, DAY)
    state, d = run(state, post(), NIGHT)
    assert status(d) == "deferred" and not sends(d) and len(d.deliveries) == 1
    (remind,) = d.reminders
    assert remind.at == dt.datetime(2026, 12, 4, 23, 0, tzinfo=dt.UTC)  # 07:00 in Shanghai
    state, d = run(state, remind.message, remind.at)
    assert sends(d) == [("wechat", "n1", 0)] and status(d) == "sending"


def test_a_critical_alert_ignores_quiet_hours_and_switched_off_channels_and_always_has_sms() -> None:
    prefs = Preferences(channels=["wechat"], off={"clinical": ["wechat"]}, quiet_start=22 * 60, quiet_end=7 * 60)
    state, _ = run(N.initial(ACCOUNT), SetPreferences(prefs))
    state, d = run(state, post(category="clinical", critical=True, kind="critical.value"), NIGHT)
    assert sends(d) == [("wechat", "n1", 0)] and not d.reminders
    assert state.pending["n1"].plan == ["wechat", "sms"]


def test_retryable_failures_back_off_then_fall_back_then_dead_letter_with_the_reason() -> None:
    state, _ = run(N.initial(ACCOUNT), post())
    for attempt in range(MAX_ATTEMPTS - 1):
        state, d = run(state, SendResult("n1", "wechat", attempt, ok=False, retryable=True, reason="-1 system busy"))
        (remind,) = d.reminders
        wait = (remind.at - DAY).total_seconds()
        assert wait == pytest.approx(backoff("n1", attempt), abs=1e-5)
        assert 0.5 * 2 ** attempt <= wait <= 1.5 * 2 ** attempt
        assert status(d) == "retrying" and not sends(d)
        state, d = run(state, SendNow("n1"), remind.at)
        assert sends(d) == [("wechat", "n1", attempt + 1)]
    state, d = run(state, SendResult("n1", "wechat", MAX_ATTEMPTS - 1, ok=False, retryable=True, reason="-1 busy"))
    assert sends(d) == [("sms", "n1", 0)]  # attempts used up: the next channel
    state, d = run(state, SendResult("n1", "sms", 0, ok=False, fallback=True, reason="isv.MOBILE_NUMBER_ILLEGAL"))
    assert status(d) == "dead" and "sms: isv.MOBILE_NUMBER_ILLEGAL" in d.records[-1].values["last_error"]
    assert not state.pending and state.dead == 1
    assert [e.type for e in d.events] == ["NoticeDeadLettered"]


def test_an_unsubscribed_user_falls_back_to_sms_at_once() -> None:
    state, _ = run(N.initial(ACCOUNT), post())
    state, d = run(state, SendResult("n1", "wechat", 0, ok=False, fallback=True, reason="43004 not following"))
    assert sends(d) == [("sms", "n1", 0)] and not d.reminders
    state, d = run(state, SendResult("n1", "sms", 0, ok=True, provider_id="biz-1"))
    assert status(d) == "sent" and d.records[-1].values["channel"] == "sms" and not state.pending


def test_a_stale_or_repeated_result_is_ignored() -> None:
    state, _ = run(N.initial(ACCOUNT), post())
    state, d = run(state, SendResult("n1", "wechat", 0, ok=True, provider_id="m1"))
    again, d = run(state, SendResult("n1", "wechat", 0, ok=True, provider_id="m1"))
    assert not d.writes and again == state
    _, d = run(state, SendResult("other", "sms", 0, ok=False))
    assert not d.writes


def test_a_provider_asking_to_wait_is_waited_for() -> None:
    state, _ = run(N.initial(ACCOUNT), post())
    _, d = run(state, SendResult("n1", "wechat", 0, ok=False, retryable=True, retry_after=60.0))
    assert (d.reminders[0].at - DAY).total_seconds() == 60.0


def test_ops_resend_a_dead_letter_on_every_channel_and_not_one_still_sending() -> None:
    state, _ = run(N.initial(ACCOUNT), post())
    with pytest.raises(Refusal, match="正在发送"):
        run(state, Resend("n1", "booking.confirmed", "t", "b"))
    state, _ = run(state, SendResult("n1", "wechat", 0, ok=False, fallback=True, reason="x"))
    state, _ = run(state, SendResult("n1", "sms", 0, ok=False, fallback=True, reason="y"))
    state, d = run(state, Resend("n1", "booking.confirmed", "t", "b"))
    assert sends(d) == [("wechat", "n1", 0)] and status(d) == "sending" and d.records[0].values["dead_at"] is None


def test_the_publisher_may_narrow_the_channels() -> None:
    _, d = run(N.initial(ACCOUNT), post(channels=["sms"]))
    assert sends(d) == [("sms", "n1", 0)]


def test_preferences_are_the_recipients_own_and_checked() -> None:
    state = N.initial(ACCOUNT)
    assert N.may_call(Caller(ACCOUNT), ACCOUNT, GetPreferences())
    assert not N.may_call(Caller("someone-else"), ACCOUNT, GetPreferences())
    assert not N.may_call(Caller(ACCOUNT), ACCOUNT, post())  # nobody posts to themselves from outside
    for bad in (Preferences(channels=["fax"]), Preferences(channels=["sms", "sms"]),
                Preferences(quiet_start=60), Preferences(quiet_start=60, quiet_end=60),
                Preferences(quiet_start=25 * 60, quiet_end=60)):
        with pytest.raises(Refusal):
            run(state, SetPreferences(bad))
    state, _ = run(state, SetPreferences(Preferences(channels=["sms"], quiet_start=1320, quiet_end=420)))
    assert N.handle(state, GetPreferences(), ctx()).reply["channels"] == ["sms"]


def test_the_notice_lifecycle_refuses_illegal_steps() -> None:
    assert NOTICE.step(NoticeStatus.SENDING, "accepted") == NoticeStatus.SENT
    with pytest.raises(InvalidTransition):
        NOTICE.step(NoticeStatus.SENT, "accepted")
    with pytest.raises(InvalidTransition):
        NOTICE.step(NoticeStatus.DEAD, "retry")


def test_a_scheduled_notice_waits_for_its_time_is_posted_then_and_flagged_late_after_an_outage() -> None:
    at = DAY + dt.timedelta(days=3)
    state, d = run(N.initial(ACCOUNT), Schedule(at, post("r1", kind="revisit.due", category="reminder")))
    assert d.reply["status"] == "scheduled" and not d.deliveries and not sends(d)
    (remind,) = d.reminders
    assert (remind.at, remind.key) == (at, "at:r1") and status(d) == "scheduled"
    late = Context(make_address("notifier", ACCOUNT), ACCOUNT, at + dt.timedelta(hours=2), SYSTEM,
                   late_by=dt.timedelta(hours=2))
    d = N.handle(state, remind.message, late)
    assert [x.body.get("late") for x in d.deliveries] == [True] and d.records[0].values["late"] is True
    assert sends(d) == [("wechat", "r1", 0)] and not d.state.scheduled


def test_a_scheduled_notice_whose_reason_went_away_is_never_posted() -> None:
    at = DAY + dt.timedelta(hours=1)
    state, _ = run(N.initial(ACCOUNT), Schedule(at, post("pickup", kind="medicine.ready", category="pharmacy")))
    state, d = run(state, CancelScheduled("pickup", "已取药"))
    assert d.cancel_reminders == ("at:pickup",) and status(d) == "cancelled"
    _, d = run(state, Fire(post("pickup", kind="medicine.ready", category="pharmacy")), at)
    assert not d.writes  # a reminder already on its way finds it cancelled
    with pytest.raises(Refusal, match="已发送或已取消"):
        run(state, CancelScheduled("pickup"))
