"""The waiting queue's pure ``handle()`` as tables: order, calls, skips, recalls and positions (OUT-12, MSG-7).
No PostgreSQL, no Trio server."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest

from carehub.actors.notifier import NoticeEvent
from carehub.actors.slot_pool import BEIJING, JoinQueue, VisitOutcome
from carehub.actors.waiting_queue import (
    QUEUE_ENTRY,
    CallNext,
    EntryStatus,
    GetPosition,
    GetQueue,
    MarkSeen,
    QueueState,
    Recall,
    SetPriority,
    SetRules,
    Skip,
    WaitingQueue,
)
from carehub.hub import SYSTEM, Caller, Context, Decision, InvalidTransition, Refusal, make_address

QUEUE = WaitingQueue()
KEY = "doc1:2026-12-04:am"
SLOT0 = dt.datetime(2026, 12, 4, 8, 0, tzinfo=BEIJING)


def ctx(minutes: float = 0) -> Context:
    return Context(make_address("queue", KEY), KEY, SLOT0 + dt.timedelta(minutes=minutes), SYSTEM)


def join(booking_id: str, slot_no: int, *, checked_in_minutes: float = -30, revisit: bool = False) -> JoinQueue:
    """A patient of slot ``slot_no`` (10 minutes each) checking in ``checked_in_minutes`` after 08:00."""
    return JoinQueue(booking_id, f"acc-{booking_id}", f"{booking_id}*", slot_no,
                     SLOT0 + dt.timedelta(minutes=10 * slot_no), SLOT0 + dt.timedelta(minutes=checked_in_minutes),
                     "cardio", "3诊室", "李医生", 10, revisit)


def run(state: QueueState, *messages: msgspec.Struct) -> tuple[QueueState, Decision[QueueState]]:
    decision: Decision[QueueState] | None = None
    for m in messages:
        decision = QUEUE.handle(state, m, ctx())
        state = decision.state
    assert decision is not None
    return state, decision


def line(state: QueueState) -> list[str]:
    return [w.booking_id for w in state.waiting]


def queue(*joins: JoinQueue) -> QueueState:
    state, _ = run(QUEUE.initial(KEY), *joins)
    return state


ORDER: list[tuple[str, list[msgspec.Struct], list[str]]] = [
    ("by slot time when everyone came early", [join("a", 2), join("b", 0), join("c", 1)], ["b", "c", "a"]),
    ("a late patient goes by check-in time", [join("a", 0, checked_in_minutes=25), join("b", 1), join("c", 2)],
     ["b", "c", "a"]),
    ("priority first", [join("a", 0), join("b", 1), SetPriority("b")], ["b", "a"]),
    ("returning patients first when the rule says so",
     [SetRules(revisit_first=True), join("a", 0), join("b", 1, revisit=True)], ["b", "a"]),
    ("returning patients in turn otherwise", [join("a", 0), join("b", 1, revisit=True)], ["a", "b"]),
    ("joining twice changes nothing", [join("a", 0), join("a", 0)], ["a"]),
]


@pytest.mark.parametrize(("messages", "expected"), [c[1:] for c in ORDER], ids=[c[0] for c in ORDER])
def test_the_line_is_in_order(messages: list[msgspec.Struct], expected: list[str]) -> None:
    state, _ = run(QUEUE.initial(KEY), *messages)
    assert line(state) == expected


def test_calling_the_next_patient_finishes_the_one_being_seen_and_tells_their_slot_pool() -> None:
    state, first = run(queue(join("a", 0), join("b", 1)), CallNext())
    assert state.calling is not None and state.calling.booking_id == "a" and line(state) == ["b"]
    assert [d.type for d in first.deliveries][:2] == ["queue.called", "visit.step"]
    assert first.records[0].table == "queue_calls" and first.records[0].table in QUEUE.projections
    state, second = run(state, CallNext())
    assert state.calling is not None and state.calling.booking_id == "b" and state.seen == ["a"]
    assert [t.message for t in second.tells if isinstance(t.message, VisitOutcome)] == [VisitOutcome("a", "seen")]
    # MSG-7: "please come in" is also a notice on the patient's channels, once per call
    called = [t for t in second.tells if isinstance(t.message, NoticeEvent)]
    assert [(t.to, t.message.kind, t.message.account_id) for t in called] == [
        (make_address("notify", f"{KEY}:2:queue.called"), "queue.called", "acc-b")]


def test_a_skipped_patient_moves_back_and_after_too_many_skips_is_missed_until_recalled() -> None:
    state = queue(*(join(b, i) for i, b in enumerate("abcde")))
    state, _ = run(state, CallNext(), Skip())
    assert state.calling is None and line(state) == ["b", "c", "d", "a", "e"]  # skip_back 3
    state, _ = run(state, SetRules(max_skips=0), CallNext(), Skip())
    assert "b" not in line(state) and [w.booking_id for w in state.missed] == ["b"]
    state, _ = run(state, Recall("b"))
    assert state.calling is not None and state.calling.booking_id == "b" and state.missed == []


POSITIONS: list[tuple[str, list[msgspec.Struct], str, EntryStatus, int | None]] = [
    ("waiting second", [], "b", EntryStatus.WAITING, 2),
    ("being called", [CallNext()], "a", EntryStatus.CALLED, 0),
    ("seen", [CallNext(), MarkSeen()], "a", EntryStatus.SEEN, None),
    ("missed", [SetRules(max_skips=0), CallNext(), Skip()], "a", EntryStatus.MISSED, None),
]


@pytest.mark.parametrize(("messages", "booking", "status", "position"), [c[1:] for c in POSITIONS],
                         ids=[c[0] for c in POSITIONS])
def test_a_patient_hears_where_they_are(messages: list[msgspec.Struct], booking: str, status: EntryStatus,
                                        position: int | None) -> None:
    state = queue(join("a", 0), join("b", 1))
    if messages:
        state, _ = run(state, *messages)
    reply = QUEUE.handle(state, GetPosition(booking), ctx()).reply
    assert (reply["status"], reply["position"]) == (status, position)
    assert reply["status"] == status.value  # the wire value


REFUSED: list[tuple[str, list[msgspec.Struct], msgspec.Struct, str]] = [
    ("nobody to call", [], CallNext(), "queue_empty"),
    ("nobody to skip", [join("a", 0)], Skip(), "invalid_state"),
    ("nobody to mark seen", [join("a", 0)], MarkSeen(), "invalid_state"),
    ("recall of a stranger", [join("a", 0)], Recall("zz"), "not_found"),
    ("priority for a stranger", [join("a", 0)], SetPriority("zz"), "not_found"),
    ("rules out of range", [], SetRules(skip_back=0), "invalid"),
    ("position of a stranger", [join("a", 0)], GetPosition("zz"), "not_found"),
]


@pytest.mark.parametrize(("before", "message", "code"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_what_the_queue_refuses(before: list[msgspec.Struct], message: msgspec.Struct, code: str) -> None:
    state = queue(*before) if before else QUEUE.initial(KEY)
    with pytest.raises(Refusal) as refused:
        QUEUE.handle(state, message, ctx())
    assert refused.value.code == code


def test_every_change_publishes_the_positions_coalesced() -> None:
    _, decision = run(queue(join("a", 0)), join("b", 1))
    positions = decision.publishes[-1]
    assert positions.topic == f"queue/{KEY}" and positions.coalesce == "positions"
    assert positions.body["positions"] == {"a": {"position": 1, "wait_minutes": 0},
                                           "b": {"position": 2, "wait_minutes": 10}}


def test_only_the_sessions_doctor_runs_the_queue_and_anyone_may_ask_a_position() -> None:
    doctor, other = Caller("doc1", frozenset({"doctor"})), Caller("doc2", frozenset({"doctor"}))
    assert QUEUE.may_call(doctor, KEY, CallNext()) and QUEUE.may_call(doctor, KEY, GetQueue())
    assert not QUEUE.may_call(other, KEY, CallNext())
    assert QUEUE.may_call(other, KEY, GetPosition("a"))  # the handler checks the booking is theirs
    assert not QUEUE.may_call(doctor, KEY, SetRules())


def test_the_queue_entry_table_names_the_state_and_event_of_an_illegal_move() -> None:
    with pytest.raises(InvalidTransition) as refused:
        QUEUE_ENTRY.step(EntryStatus.SEEN, "Recall")
    assert (refused.value.state, refused.value.event) == (EntryStatus.SEEN, "Recall")
    assert QUEUE_ENTRY.step(EntryStatus.MISSED, "Recall") == EntryStatus.CALLED
