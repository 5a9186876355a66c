"""The waiting line of one clinic session, and the doctor's calls (OUT-12, MSG-7).

Address ``queue/<doctor_id>:<YYYY-MM-DD>:<period>`` (the session id). Patients join when they
check in (a durable tell from their slot pool). Order rule: priority patients first (set by
staff), then, when ``revisit_first`` is on, returning patients; then by effective time: the
slot time for patients who checked in before their slot, the check-in time for late ones.

The doctor calls the next patient (which completes the one being seen), skips a patient who
did not come (they move back ``skip_back`` places; after ``max_skips`` skips they leave the
line as missed until recalled), recalls, and marks seen. After every change the actor
publishes every waiting patient's position and estimated wait on topic ``queue/<session_id>``
in one coalesced update: a slow phone gets the latest positions, never a backlog. Calls go to
``broadcast/display/<department_id>`` for the hall screens and to the ``queue_calls`` table.
"Near your turn" and "please come in" are durable deliveries, so they are never lost.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from typing import Any

import msgspec

from carehub.hub import (
    Behaviour,
    Caller,
    Context,
    Decision,
    Deliver,
    Event,
    Lifecycle,
    Publish,
    Record,
    Refusal,
    Tell,
    make_address,
)

from .notifier import notify
from .slot_pool import JoinQueue, VisitOutcome, parse_pool_key


class EntryStatus(enum.StrEnum):
    """Where a patient is in the line (the ``status`` a position answer carries)."""

    WAITING = "waiting"
    CALLED = "called"
    MISSED = "missed"
    SEEN = "seen"


#: a queue entry's moves. ``Skip`` moves a called patient back in the line; past ``max_skips`` the
#: same skip is a ``Miss`` (out of the line until recalled). The one being seen is done when the
#: doctor calls the next (``CallNext``) or marks them seen.
QUEUE_ENTRY: Lifecycle[EntryStatus] = Lifecycle("queue entry", {
    EntryStatus.WAITING: {"CallNext": EntryStatus.CALLED, "Recall": EntryStatus.CALLED},
    EntryStatus.CALLED: {"CallNext": EntryStatus.SEEN, "MarkSeen": EntryStatus.SEEN, "Recall": EntryStatus.CALLED,
                         "Skip": EntryStatus.WAITING, "Miss": EntryStatus.MISSED},
    EntryStatus.MISSED: {"Recall": EntryStatus.CALLED},
})


class Waiting(msgspec.Struct):
    booking_id: str
    account_id: str
    label: str
    slot_no: int
    slot_at: dt.datetime
    checked_in_at: dt.datetime
    revisit: bool = False
    priority: bool = False
    skips: int = 0
    near_notified: bool = False


class QueueState(msgspec.Struct):
    session_id: str
    doctor_id: str
    department_id: str = ""
    room: str = ""
    doctor_name: str = ""
    slot_minutes: int = 10
    waiting: list[Waiting] = []
    calling: Waiting | None = None
    missed: list[Waiting] = []
    seen: list[str] = []
    #: estimated minutes per patient: the slot length, then learnt from the doctor's pace
    pace_minutes: float = 10.0
    last_done_at: dt.datetime | None = None
    calls: int = 0
    version: int = 0
    # rules
    revisit_first: bool = False
    skip_back: int = 3
    max_skips: int = 2
    near_turn: int = 3


class CallNext(msgspec.Struct, forbid_unknown_fields=True):
    """Doctor: the patient being seen is done; call the next one."""


class Skip(msgspec.Struct, forbid_unknown_fields=True):
    """Doctor: the called patient did not come; they move back (or out, after too many skips)."""


class Recall(msgspec.Struct, forbid_unknown_fields=True):
    """Doctor: call this patient now (a skipped or missed one who turned up)."""

    booking_id: str


class MarkSeen(msgspec.Struct, forbid_unknown_fields=True):
    """Doctor: the called patient has been seen (without calling the next yet)."""


class SetPriority(msgspec.Struct, forbid_unknown_fields=True):
    booking_id: str
    priority: bool = True


class SetRules(msgspec.Struct, forbid_unknown_fields=True):
    revisit_first: bool = False
    skip_back: int = 3
    max_skips: int = 2
    near_turn: int = 3


class GetQueue(msgspec.Struct, forbid_unknown_fields=True):
    """Doctor/staff: the whole line."""


class GetPosition(msgspec.Struct, forbid_unknown_fields=True):
    booking_id: str
    account_id: str | None = None


def _session_doctor(key: str) -> str:
    pool, _, period = key.rpartition(":")
    if not period:
        raise Refusal(f"a queue key is '<doctor>:<YYYY-MM-DD>:<period>', got {key!r}", code="bad_key")
    return parse_pool_key(pool)[0]


class WaitingQueue(Behaviour[QueueState]):
    kind = "queue"
    #: the hall screens' feed of calls (written only by this kind)
    projections = frozenset({"queue_calls"})
    state_type = QueueState
    messages = {
        m.__name__: m
        for m in (JoinQueue, CallNext, Skip, Recall, MarkSeen, SetPriority, SetRules, GetQueue, GetPosition)
    }
    DOCTOR_MESSAGES = (CallNext, Skip, Recall, MarkSeen, SetPriority, GetQueue)

    def initial(self, key: str) -> QueueState:
        return QueueState(session_id=key, doctor_id=_session_doctor(key))

    def may_call(self, caller: Caller, key: str, message: msgspec.Struct) -> bool:
        if caller.is_system:
            return True
        if isinstance(message, GetPosition):
            return True  # the handler checks the booking is the caller's
        return isinstance(message, self.DOCTOR_MESSAGES) and caller.account_id == _session_doctor(key)

    def summary(self, state: QueueState) -> str:
        calling = state.calling.label if state.calling else "-"
        return f"{state.doctor_name or state.doctor_id} {state.room}: {len(state.waiting)} waiting, calling {calling}"

    # ---- ordering --------------------------------------------------------------------------

    def _order_key(self, state: QueueState, w: Waiting) -> tuple[Any, ...]:
        effective = w.slot_at if w.checked_in_at <= w.slot_at else w.checked_in_at
        return (not w.priority, not (state.revisit_first and w.revisit), effective, w.slot_no)

    def _insert(self, state: QueueState, w: Waiting) -> list[Waiting]:
        key = self._order_key(state, w)
        line = list(state.waiting)
        for i, other in enumerate(line):
            if self._order_key(state, other) > key:
                line.insert(i, w)
                return line
        line.append(w)
        return line

    @staticmethod
    def _place(state: QueueState, i: int) -> dict[str, Any]:
        """Position (1 = next) and estimated wait of the ``i``-th waiting patient."""
        ahead = i + (1 if state.calling else 0)
        return {"position": i + 1, "wait_minutes": round(ahead * state.pace_minutes)}

    def positions(self, state: QueueState) -> dict[str, dict[str, Any]]:
        return {w.booking_id: self._place(state, i) for i, w in enumerate(state.waiting)}

    # ---- handling --------------------------------------------------------------------------

    def handle(self, state: QueueState, message: msgspec.Struct, ctx: Context) -> Decision[QueueState]:
        match message:
            case JoinQueue():
                return self._join(state, message, ctx)
            case CallNext():
                return self._call_next(state, ctx)
            case Skip():
                return self._skip(state, ctx)
            case Recall(booking_id=booking_id):
                return self._recall(state, booking_id, ctx)
            case MarkSeen():
                if state.calling is None:
                    raise Refusal("当前没有正在就诊的患者 (nobody is being seen)", code="invalid_state")
                new, outcome = self._finish(state, ctx, "MarkSeen")
                return self._changed(new, ctx, "Seen", {"booking": state.calling.booking_id}, tells=outcome)
            case SetPriority(booking_id=booking_id, priority=priority):
                line = [msgspec.structs.replace(w, priority=priority) if w.booking_id == booking_id else w
                        for w in state.waiting]
                if line == state.waiting:
                    raise Refusal("该患者不在候诊队列中 (not waiting)", code="not_found")
                moved = next(w for w in line if w.booking_id == booking_id)
                rest = msgspec.structs.replace(state, waiting=[w for w in line if w.booking_id != booking_id])
                new = msgspec.structs.replace(rest, waiting=self._insert(rest, moved))
                return self._changed(new, ctx, "PrioritySet", {"booking": booking_id, "priority": priority})
            case SetRules():
                if not (1 <= message.skip_back <= 20 and 0 <= message.max_skips <= 5 and 1 <= message.near_turn <= 20):
                    raise Refusal("规则超出范围 (rules out of range)", code="invalid")
                new = msgspec.structs.replace(state, revisit_first=message.revisit_first,
                                              skip_back=message.skip_back, max_skips=message.max_skips,
                                              near_turn=message.near_turn)
                return self._changed(new, ctx, "RulesSet", msgspec.structs.asdict(message))
            case GetQueue():
                return Decision.answer(state, self.view(state))
            case GetPosition(booking_id=booking_id, account_id=account_id):
                return Decision.answer(state, self._position(state, booking_id, account_id or ctx.caller.account_id,
                                                             ctx.caller.is_system and account_id is None))
        raise Refusal(f"queue does not handle {type(message).__name__}")

    def view(self, state: QueueState) -> dict[str, Any]:
        def row(w: Waiting) -> dict[str, Any]:
            return {"booking_id": w.booking_id, "label": w.label, "slot_no": w.slot_no,
                    "slot_at": w.slot_at.isoformat(), "checked_in_at": w.checked_in_at.isoformat(),
                    "revisit": w.revisit, "priority": w.priority, "skips": w.skips}
        return {
            "session_id": state.session_id, "room": state.room, "doctor_name": state.doctor_name,
            "calling": None if state.calling is None else row(state.calling),
            "waiting": [row(w) for w in state.waiting], "missed": [row(w) for w in state.missed],
            "seen": len(state.seen), "pace_minutes": round(state.pace_minutes, 1), "version": state.version,
            "rules": {"revisit_first": state.revisit_first, "skip_back": state.skip_back,
                      "max_skips": state.max_skips, "near_turn": state.near_turn},
        }

    def _position(self, state: QueueState, booking_id: str, account_id: str | None, trusted: bool) -> dict[str, Any]:
        def mine(w: Waiting) -> bool:
            return w.booking_id == booking_id and (trusted or w.account_id == account_id)

        base = {"session_id": state.session_id, "booking_id": booking_id, "room": state.room, "version": state.version}
        if state.calling is not None and mine(state.calling):
            return {**base, "status": EntryStatus.CALLED, "position": 0, "wait_minutes": 0}
        for i, w in enumerate(state.waiting):
            if mine(w):
                return {**base, "status": EntryStatus.WAITING, **self._place(state, i)}
        if any(mine(w) for w in state.missed):
            return {**base, "status": EntryStatus.MISSED, "position": None, "wait_minutes": None}
        if booking_id in state.seen:
            return {**base, "status": EntryStatus.SEEN, "position": None, "wait_minutes": None}
        raise Refusal("该预约不在候诊队列中, 请先签到 (not in the queue: check in first)", code="not_found")

    def _join(self, state: QueueState, m: JoinQueue, ctx: Context) -> Decision[QueueState]:
        known = {w.booking_id for w in state.waiting} | {w.booking_id for w in state.missed} | set(state.seen)
        if m.booking_id in known or (state.calling and state.calling.booking_id == m.booking_id):
            return Decision.answer(state, {"joined": False})
        w = Waiting(m.booking_id, m.account_id, m.label, m.slot_no, m.slot_at, m.checked_in_at, m.revisit)
        base = state
        if not state.department_id:
            base = msgspec.structs.replace(state, department_id=m.department_id, room=m.room,
                                           doctor_name=m.doctor_name, slot_minutes=m.slot_minutes,
                                           pace_minutes=float(m.slot_minutes))
        new = msgspec.structs.replace(base, waiting=self._insert(base, w))
        return self._changed(new, ctx, "Joined", {"booking": m.booking_id})

    def _finish(self, state: QueueState, ctx: Context, event: str) -> tuple[QueueState, tuple[Tell, ...]]:
        """The patient being seen is done (``event``: the doctor's message saying so): learn the pace,
        tell their slot pool."""
        w = state.calling
        if w is None:
            return state, ()
        QUEUE_ENTRY.step(EntryStatus.CALLED, event)
        pace = state.pace_minutes
        if state.last_done_at is not None:
            took = (ctx.now - state.last_done_at).total_seconds() / 60
            if 0.5 <= took <= 120:
                pace = 0.7 * pace + 0.3 * took
        pool = state.session_id.rpartition(":")[0]
        new = msgspec.structs.replace(state, calling=None, seen=[*state.seen, w.booking_id], pace_minutes=pace,
                                      last_done_at=ctx.now)
        return new, (Tell(make_address("slotpool", pool), VisitOutcome(w.booking_id, "seen")),)

    def _call(self, state: QueueState, w: Waiting, ctx: Context, kind: str, was: EntryStatus) -> Decision[QueueState]:
        QUEUE_ENTRY.step(was, "CallNext" if kind == "call" else "Recall")
        new = msgspec.structs.replace(state, calling=w, calls=state.calls + 1,
                                      last_done_at=state.last_done_at or ctx.now)
        text = f"请 {w.label} 到 {state.room} 就诊"
        call_id = f"{state.session_id}:{new.calls}"
        return self._changed(
            new, ctx, "Called", {"booking": w.booking_id, "kind": kind},
            deliveries=(
                Deliver(w.account_id, "queue.called", {"booking_id": w.booking_id, "room": state.room,
                                                       "text": f"请到 {state.room} 就诊 ({state.doctor_name}医生)"},
                        msg_id=f"{call_id}:called"),
                Deliver(w.account_id, "visit.step", {"booking_id": w.booking_id, "step": "called",
                                                     "room": state.room}, msg_id=f"{w.booking_id}:step:called"),
            ),
            publishes=(Publish(f"broadcast/display/{state.department_id}", "queue.call",
                               {"room": state.room, "label": w.label, "doctor_name": state.doctor_name,
                                "text": text, "kind": kind, "at": ctx.now.isoformat()}),),
            tells=(notify(f"{call_id}:queue.called", w.account_id, "queue.called", {
                "booking_id": w.booking_id, "patient": w.label, "room": state.room,
                "department_id": state.department_id}, source="queue", data={"booking_id": w.booking_id}),),
            records=(Record("queue_calls", {"id": call_id}, {
                "department_id": state.department_id, "session_id": state.session_id, "booking_id": w.booking_id,
                "patient_label": w.label, "room": state.room, "kind": kind, "called_at": ctx.now}),),
        )

    def _call_next(self, state: QueueState, ctx: Context) -> Decision[QueueState]:
        done, tells = self._finish(state, ctx, "CallNext")
        if not done.waiting:
            if state.calling is None:
                raise Refusal("候诊队列中没有患者 (nobody is waiting)", code="queue_empty")
            return self._changed(done, ctx, "Seen", {"booking": state.calling.booking_id}, tells=tells)
        nxt, rest = done.waiting[0], done.waiting[1:]
        decision = self._call(msgspec.structs.replace(done, waiting=rest), nxt, ctx, "call", EntryStatus.WAITING)
        return _with_tells(decision, tells)

    def _skip(self, state: QueueState, ctx: Context) -> Decision[QueueState]:
        w = state.calling
        if w is None:
            raise Refusal("当前没有正在呼叫的患者 (nobody is being called)", code="invalid_state")
        skipped = msgspec.structs.replace(w, skips=w.skips + 1, near_notified=False)
        if skipped.skips > state.max_skips:
            QUEUE_ENTRY.step(EntryStatus.CALLED, "Miss")
            new = msgspec.structs.replace(state, calling=None, missed=[*state.missed, skipped])
            return self._changed(new, ctx, "Missed", {"booking": w.booking_id}, deliveries=(
                Deliver(w.account_id, "queue.missed", {"booking_id": w.booking_id,
                                                       "text": "您已过号, 请到分诊台登记后等待复呼"},
                        msg_id=f"{w.booking_id}:missed:{skipped.skips}"),))
        QUEUE_ENTRY.step(EntryStatus.CALLED, "Skip")
        line = list(state.waiting)
        line.insert(min(state.skip_back, len(line)), skipped)
        new = msgspec.structs.replace(state, calling=None, waiting=line)
        return self._changed(new, ctx, "Skipped", {"booking": w.booking_id, "skips": skipped.skips})

    def _recall(self, state: QueueState, booking_id: str, ctx: Context) -> Decision[QueueState]:
        found = [w for w in [*state.waiting, *state.missed] if w.booking_id == booking_id]
        if not found:
            if state.calling is not None and state.calling.booking_id == booking_id:
                return self._call(state, state.calling, ctx, "recall", EntryStatus.CALLED)  # call again
            raise Refusal("该患者不在候诊队列中 (not waiting)", code="not_found")
        w = found[0]
        was = EntryStatus.WAITING if any(x.booking_id == booking_id for x in state.waiting) else EntryStatus.MISSED
        done, tells = self._finish(state, ctx, "CallNext")
        rest = msgspec.structs.replace(
            done, waiting=[x for x in done.waiting if x.booking_id != booking_id],
            missed=[x for x in done.missed if x.booking_id != booking_id],
        )
        return _with_tells(self._call(rest, w, ctx, "recall", was), tells)

    def _changed(
        self, state: QueueState, ctx: Context, event: str, body: dict[str, Any], *,
        deliveries: tuple[Deliver, ...] = (), publishes: tuple[Publish, ...] = (), tells: tuple[Tell, ...] = (),
        records: tuple[Record, ...] = (),
    ) -> Decision[QueueState]:
        """Every change: bump the version, publish positions, tell patients now near their turn."""
        waiting = list(state.waiting)
        near: list[Deliver] = []
        notices: list[Tell] = []
        for i, w in enumerate(waiting[: state.near_turn]):
            if not w.near_notified:
                waiting[i] = msgspec.structs.replace(w, near_notified=True)
                near.append(Deliver(w.account_id, "queue.near", {
                    "booking_id": w.booking_id, "position": i + 1, "room": state.room,
                    "text": f"前面还有 {i} 位, 请到 {state.room} 附近候诊"}, msg_id=f"{w.booking_id}:near:{w.skips}"))
                # MSG-7: the same, as a notice on the patient's channels (WeChat, SMS) and in the inbox
                notices.append(notify(f"{w.booking_id}:queue.near:{w.skips}", w.account_id, "queue.near", {
                    "booking_id": w.booking_id, "patient": w.label, "ahead": str(i), "room": state.room,
                    "department_id": state.department_id}, source="queue", data={"booking_id": w.booking_id}))
        new = msgspec.structs.replace(state, waiting=waiting, version=state.version + 1)
        positions = Publish(
            f"queue/{state.session_id}", "queue.positions",
            {"session_id": state.session_id, "version": new.version, "room": state.room,
             "calling": None if new.calling is None else {"booking_id": new.calling.booking_id,
                                                          "label": new.calling.label},
             "positions": self.positions(new), "at": ctx.now.isoformat()},
            coalesce="positions",
        )
        return Decision(
            new, reply=self.view(new), events=(Event(event, body),), deliveries=(*deliveries, *near),
            publishes=(*publishes, positions), tells=(*tells, *notices), records=records,
        )


def _with_tells(decision: Decision[QueueState], tells: tuple[Tell, ...]) -> Decision[QueueState]:
    return dataclasses.replace(decision, tells=(*decision.tells, *tells))
