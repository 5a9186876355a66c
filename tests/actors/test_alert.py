"""The alert actor's pure ``handle()``: the escalation timeline with a fake clock, acknowledgement
as proof, a stranger refused, a late deadline after a restart (MSG-7, DOC-19). No PostgreSQL, no Trio."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest

from carehub.actors.alert import (
    ACK_KEY,
    AckDeadline,
    Acknowledge,
    Alert,
    AlertState,
    AlertStatus,
    GetAlert,
    Raise,
    Unanswered,
)
from carehub.actors.notifier import NoticeEvent
from carehub.hub import SYSTEM, Caller, Context, Decision, Refusal, make_address

A = Alert()
ALERT_ID = "al-1"
T0 = dt.datetime(2026, 12, 4, 2, 0, tzinfo=dt.UTC)
N = dt.timedelta(minutes=5)
DOCTOR, ON_CALL, HEAD = "acc-doctor1", "acc-doctor2", "acc-doctor3"


def ctx(now: dt.datetime, caller: Caller = SYSTEM, late_by: dt.timedelta = dt.timedelta(0)) -> Context:
    return Context(make_address("alert", ALERT_ID), ALERT_ID, now, caller, late_by)


def raise_() -> Raise:
    return Raise([DOCTOR, ON_CALL, HEAD], ["李建国", "王晓燕", "张明"], 5, patient_id="p1", patient="张*三",
                 item="血钾", value="6.8 mmol/L", flag="HH", department_id="cardio", department="心血管内科",
                 source="lis:report-1")


def run(state: AlertState, message: msgspec.Struct, now: dt.datetime, caller: Caller = SYSTEM,
        late_by: dt.timedelta = dt.timedelta(0)) -> tuple[AlertState, Decision[AlertState]]:
    d = A.handle(state, message, ctx(now, caller, late_by))
    return d.state, d


def notices(d: Decision[AlertState]) -> list[tuple[str, str, str]]:
    return [(str(t.to), t.message.account_id, t.message.kind) for t in d.tells if isinstance(t.message, NoticeEvent)]


def raised(now: dt.datetime = T0) -> tuple[AlertState, Decision[AlertState]]:
    return run(A.initial(ALERT_ID), raise_(), now)


def test_a_raised_alert_notices_the_responsible_doctor_and_sets_the_deadline() -> None:
    state, d = raised()
    assert state.status == AlertStatus.OPEN and state.level == 0
    assert notices(d) == [("notify/al-1:0", DOCTOR, "critical.value")]
    values = d.tells[0].message.values
    assert values["doctor"] == "李建国" and values["value"] == "6.8 mmol/L" and values["alert_id"] == ALERT_ID
    (remind,) = d.reminders
    assert remind.at == T0 + N and remind.key == ACK_KEY and remind.message == AckDeadline(0)
    assert [(x.account_id, x.type) for x in d.deliveries] == [(DOCTOR, "alert.raised")]
    assert {r.table for r in d.records} == {"clinical_alerts", "alert_steps"} == A.projections
    row = d.records[0].values
    assert row["status"] == "open" and row["current_account_id"] == DOCTOR and row["deadline_at"] == T0 + N
    assert [r.values["action"] for r in d.records[1:]] == ["raised", "notified"]


def test_the_escalation_timeline_on_call_then_head_then_the_heads_ack_with_device() -> None:
    state, d = raised()
    state, d = run(state, d.reminders[0].message, T0 + N)
    assert state.status == AlertStatus.ESCALATED and state.level == 1
    assert notices(d) == [("notify/al-1:1", ON_CALL, "critical.value")]
    assert d.reminders[0].at == T0 + 2 * N
    assert sorted((x.account_id, x.type) for x in d.deliveries) == [
        (DOCTOR, "alert.updated"), (ON_CALL, "alert.raised")]
    state, d = run(state, d.reminders[0].message, T0 + 2 * N)
    assert state.level == 2 and notices(d) == [("notify/al-1:2", HEAD, "critical.value")]
    assert d.reminders[0].at == T0 + 3 * N
    at = T0 + 2 * N + dt.timedelta(minutes=1)
    state, d = run(state, Acknowledge(HEAD, "browser-abc"), at, Caller(HEAD, frozenset({"doctor"})))
    assert state.status == AlertStatus.ACKNOWLEDGED and d.cancel_reminders == (ACK_KEY,)
    assert (state.acked_by, state.acked_at, state.device) == (HEAD, at, "browser-abc")
    assert d.records[0].values["acked_by"] == HEAD and d.records[0].values["ack_device"] == "browser-abc"
    assert sorted(x.account_id for x in d.deliveries) == sorted([DOCTOR, ON_CALL, HEAD])
    assert {x.type for x in d.deliveries} == {"alert.updated"}
    timeline = [(s.at, s.action, s.target) for s in state.steps]
    assert timeline == [
        (T0, "raised", DOCTOR), (T0, "notified", DOCTOR),
        (T0 + N, "escalated", ON_CALL), (T0 + N, "notified", ON_CALL),
        (T0 + 2 * N, "escalated", HEAD), (T0 + 2 * N, "notified", HEAD),
        (at, "acknowledged", HEAD),
    ]
    # each decision wrote only its own new steps, numbered in order
    assert [(r.key["seq"], r.values["action"]) for r in d.records[1:]] == [(6, "acknowledged")]


def test_an_acknowledgement_stops_the_escalation() -> None:
    state, d = raised()
    deadline = d.reminders[0]
    state, d = run(state, Acknowledge(DOCTOR, "ws-1"), T0 + dt.timedelta(minutes=2), Caller(DOCTOR))
    assert state.status == AlertStatus.ACKNOWLEDGED and d.cancel_reminders == (ACK_KEY,) and not d.tells
    # the reminder raced the acknowledgement: it changes nothing
    again, d = run(state, deadline.message, deadline.at)
    assert not d.writes and again == state and d.reply == {"stale": True}


def test_a_second_acknowledgement_is_refused_naming_the_first() -> None:
    state, d = raised()
    state, d = run(state, d.reminders[0].message, T0 + N)
    state, _ = run(state, Acknowledge(ON_CALL, "ws-2"), T0 + N + dt.timedelta(seconds=30), Caller(ON_CALL))
    with pytest.raises(Refusal) as err:
        run(state, Acknowledge(DOCTOR, "ws-1"), T0 + N + dt.timedelta(seconds=40), Caller(DOCTOR))
    assert err.value.code == "alert_acknowledged" and "王晓燕" in str(err.value)


def test_a_strangers_ack_is_refused_and_so_is_a_contact_not_yet_alerted() -> None:
    state, _ = raised()
    stranger = Caller("acc-other", frozenset({"doctor"}))
    assert not A.may_call(stranger, ALERT_ID, Acknowledge(DOCTOR, "x"))  # posing as someone else
    assert A.may_call(stranger, ALERT_ID, Acknowledge("acc-other", "x"))
    with pytest.raises(Refusal) as err:
        run(state, Acknowledge("acc-other", "x"), T0, stranger)
    assert err.value.code == "alert_not_contact"
    with pytest.raises(Refusal):  # the head has not been alerted yet
        run(state, Acknowledge(HEAD, "x"), T0, Caller(HEAD))
    with pytest.raises(Refusal):
        run(state, GetAlert(), T0, stranger)
    assert state.status == AlertStatus.OPEN


def test_a_late_deadline_after_a_restart_still_escalates_and_says_how_late() -> None:
    state, d = raised()
    restart = T0 + N + dt.timedelta(minutes=7)  # the hub was down when the deadline passed
    state, d = run(state, d.reminders[0].message, restart, late_by=dt.timedelta(minutes=7))
    assert state.status == AlertStatus.ESCALATED and notices(d) == [("notify/al-1:1", ON_CALL, "critical.value")]
    assert "迟到420秒" in state.steps[-2].note
    assert d.reminders[0].at == restart + N  # the on-call doctor gets their full time


def test_past_the_last_contact_the_alert_is_unanswered_and_ops_get_an_alarm() -> None:
    state, d = raised()
    for n in (1, 2, 3):
        state, d = run(state, d.reminders[0].message if d.reminders else AckDeadline(state.level), T0 + n * N)
    assert state.status == AlertStatus.UNANSWERED and not d.reminders
    assert [t.to for t in d.tells] == [make_address("alert-alarm", ALERT_ID)]
    assert isinstance(d.tells[0].message, Unanswered)
    assert state.steps[-1].action == "unanswered"
    # a late acknowledgement is still recorded as the proof
    state, d = run(state, Acknowledge(DOCTOR, "ws-1"), T0 + 4 * N, Caller(DOCTOR))
    assert state.status == AlertStatus.ACKNOWLEDGED


def test_a_repeated_raise_changes_nothing() -> None:
    state, _ = raised()
    again, d = run(state, raise_(), T0 + dt.timedelta(seconds=5))
    assert not d.writes and again == state and d.reply["duplicate"]


def test_a_raise_without_contacts_is_refused() -> None:
    with pytest.raises(Refusal):
        run(A.initial(ALERT_ID), Raise([], [], 5), T0)
