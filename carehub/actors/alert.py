"""One clinical alert, ``alert/<alert_id>``: a critical value (or a waiting consultation) that a
person must acknowledge, escalating along a chain of contacts until one does (MSG-7, DOC-19).

The domain (:class:`carehub.messaging.alerts.ClinicalAlerts`) raises an alert with its chain of
contacts (the responsible doctor, the department's on-call doctor, the department head) and how
long each has to acknowledge. The actor then, each step committed before the next:

1. asks for a durable notice to the current contact (:func:`carehub.actors.notifier.notify`,
   notice id ``<alert_id>:<level>``: a critical kind goes in-app *and* by SMS whatever the
   preferences say), delivers ``alert.raised`` to that contact and ``alert.updated`` to the
   earlier ones (their screens show the escalation), and reminds itself at now + ack time
   (:class:`AckDeadline`, reminder key ``ack``; it survives a restart);
2. on the deadline without an acknowledgement, moves to the next contact (``escalated``) and does
   the same; past the last contact the alert is ``unanswered``: a step is recorded, every contact
   is told, and the ``alert-alarm`` effect raises an ops alarm (a pure actor has no alarm of its own);
3. on :class:`Acknowledge` by a contact who has been alerted (the current one or an earlier one),
   records who, when and on which device — the proof — cancels the reminder and tells every
   alerted contact so their screens clear it. A second acknowledgement is refused naming the first.

Every step (raised, notified, escalated, acknowledged, unanswered) is a row of ``alert_steps``
with its time; the alert itself is a row of ``clinical_alerts``.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, ClassVar

import msgspec

from carehub.hub import (
    Behaviour,
    Caller,
    Context,
    Decision,
    Deliver,
    Event,
    Lifecycle,
    Record,
    Refusal,
    Remind,
    Tell,
    make_address,
)

from .notifier import notify

#: the reminder key of the acknowledgement deadline (one at a time)
ACK_KEY = "ack"


class AlertStatus(enum.StrEnum):
    NEW = "new"  # not raised yet (the actor's initial state)
    OPEN = "open"  # the first contact has been alerted
    ESCALATED = "escalated"  # a later contact has been alerted
    ACKNOWLEDGED = "acknowledged"
    UNANSWERED = "unanswered"  # every contact was alerted, nobody acknowledged in time


ALERT: Lifecycle[AlertStatus] = Lifecycle("alert", {
    AlertStatus.NEW: {"raise": AlertStatus.OPEN},
    AlertStatus.OPEN: {"ack": AlertStatus.ACKNOWLEDGED, "escalate": AlertStatus.ESCALATED,
                       "exhaust": AlertStatus.UNANSWERED},
    AlertStatus.ESCALATED: {"ack": AlertStatus.ACKNOWLEDGED, "escalate": AlertStatus.ESCALATED,
                            "exhaust": AlertStatus.UNANSWERED},
    # a late acknowledgement is still the proof that someone took it over
    AlertStatus.UNANSWERED: {"ack": AlertStatus.ACKNOWLEDGED},
})

#: statuses shown as "open" on the workstation and the ops view
OPEN_STATUSES = (AlertStatus.OPEN, AlertStatus.ESCALATED, AlertStatus.UNANSWERED)


class Step(msgspec.Struct):
    at: dt.datetime
    action: str  # raised, notified, escalated, acknowledged, unanswered
    target: str = ""  # the account concerned
    note: str = ""


class AlertState(msgspec.Struct):
    alert_id: str
    status: AlertStatus = AlertStatus.NEW
    kind: str = "critical.value"
    patient_id: str = ""
    patient: str = ""  # the label shown (masked name)
    item: str = ""
    value: str = ""
    flag: str = ""
    department_id: str = ""
    department: str = ""
    source: str = ""
    #: the chain: responsible doctor, on-call, head (account ids) and their names
    contacts: list[str] = []
    names: list[str] = []
    #: extra template values of the kind (a consultation id ...)
    extra: dict[str, str] = {}
    ack_seconds: float = 300.0
    level: int = 0
    raised_at: dt.datetime | None = None
    deadline: dt.datetime | None = None
    acked_by: str = ""
    acked_at: dt.datetime | None = None
    device: str = ""
    steps: list[Step] = []


# ---- messages ----------------------------------------------------------------------------------


class Raise(msgspec.Struct, forbid_unknown_fields=True):
    """The domain: raise the alert. A repeat (the same report again) changes nothing."""

    contacts: list[str]
    names: list[str]
    ack_minutes: float
    kind: str = "critical.value"
    patient_id: str = ""
    patient: str = ""
    item: str = ""
    value: str = ""
    flag: str = ""
    department_id: str = ""
    department: str = ""
    source: str = ""
    extra: dict[str, str] = {}


class Acknowledge(msgspec.Struct, forbid_unknown_fields=True):
    """A contact: "I have it" (确认收到), from the device ``device`` (a per-browser id)."""

    account_id: str
    device: str


class AckDeadline(msgspec.Struct, forbid_unknown_fields=True):
    """Reminder: the contact at ``level`` had their time; escalate unless acknowledged."""

    level: int


class GetAlert(msgspec.Struct, forbid_unknown_fields=True):
    """Read the alert (contacts may read theirs; the domain reads any)."""


class Unanswered(msgspec.Struct, forbid_unknown_fields=True):
    """Effect ``alert-alarm/<alert_id>``: nobody acknowledged; ops get an alarm."""

    alert_id: str
    kind: str
    department: str
    contacts: int


# ---- the behaviour ------------------------------------------------------------------------------


class Alert(Behaviour[AlertState]):
    kind = "alert"
    state_type = AlertState
    messages: ClassVar[dict[str, type[msgspec.Struct]]] = {
        m.__name__: m for m in (Raise, Acknowledge, AckDeadline, GetAlert)}
    projections = frozenset({"clinical_alerts", "alert_steps"})

    def initial(self, key: str) -> AlertState:
        return AlertState(alert_id=key)

    def may_call(self, caller: Caller, key: str, message: msgspec.Struct) -> bool:
        if caller.is_system:
            return True
        # whether the caller is a contact of *this* alert is checked in handle (it needs the state)
        if isinstance(message, Acknowledge):
            return caller.account_id == message.account_id
        return isinstance(message, GetAlert)

    def summary(self, state: AlertState) -> str:
        return f"{state.kind} {state.status.value}, level {state.level + 1}/{len(state.contacts)}"

    def handle(self, state: AlertState, message: msgspec.Struct, ctx: Context) -> Decision[AlertState]:
        match message:
            case Raise():
                return self._raise(state, message, ctx)
            case AckDeadline():
                return self._deadline(state, message, ctx)
            case Acknowledge():
                return self._ack(state, message, ctx)
            case GetAlert():
                if not ctx.caller.is_system and ctx.caller.account_id not in notified(state):
                    raise Refusal("您不是该警报的联系人", code="alert_not_contact")
                return Decision.answer(state, view(state))
        raise Refusal(f"alert does not handle {type(message).__name__}")

    # ---- steps ---------------------------------------------------------------------------------

    def _raise(self, state: AlertState, m: Raise, ctx: Context) -> Decision[AlertState]:
        if state.status != AlertStatus.NEW:
            return Decision.answer(state, {**view(state), "duplicate": True})
        if not m.contacts or len(m.names) != len(m.contacts) or len(set(m.contacts)) != len(m.contacts):
            raise Refusal("警报需要至少一个联系人（姓名与账号一一对应、不重复）", code="invalid")
        if not 0 < m.ack_minutes <= 24 * 60:
            raise Refusal("确认时限应在 0 到 1440 分钟之间", code="invalid")
        new = msgspec.structs.replace(
            state, status=ALERT.step(state.status, "raise"), kind=m.kind, patient_id=m.patient_id,
            patient=m.patient, item=m.item, value=m.value, flag=m.flag, department_id=m.department_id,
            department=m.department, source=m.source, contacts=list(m.contacts), names=list(m.names),
            extra=dict(m.extra), ack_seconds=m.ack_minutes * 60, level=0, raised_at=ctx.now,
            steps=[Step(ctx.now, "raised", m.contacts[0], m.source[:120])])
        return self._alert_contact(new, ctx, "raised", first=0)

    def _alert_contact(self, state: AlertState, ctx: Context, event: str, *, first: int) -> Decision[AlertState]:
        """Notice + live delivery to the contact at ``state.level`` and the deadline reminder."""
        target = state.contacts[state.level]
        deadline = ctx.now + dt.timedelta(seconds=state.ack_seconds)
        state = msgspec.structs.replace(
            state, deadline=deadline,
            steps=[*state.steps, Step(ctx.now, "notified", target,
                                      f"级别{state.level + 1}：{state.names[state.level]}")])
        values = {"alert_id": state.alert_id, "doctor": state.names[state.level], "patient": state.patient,
                  "item": state.item, "value": state.value, "flag": state.flag, "department": state.department,
                  **state.extra}
        tell = notify(f"{state.alert_id}:{state.level}", target, state.kind, values, source=f"alert/{state.alert_id}",
                      data={"alert_id": state.alert_id, "level": state.level})
        return Decision(
            state, reply=view(state), tells=(tell,), deliveries=self._deliveries(state, target),
            reminders=(Remind(deadline, AckDeadline(state.level), key=ACK_KEY),),
            records=self._records(state, ctx, first),
            events=(Event(f"Alert{event.capitalize()}", {"alert": state.alert_id, "to": target,
                                                          "level": state.level}),))

    def _deadline(self, state: AlertState, m: AckDeadline, ctx: Context) -> Decision[AlertState]:
        if state.status not in (AlertStatus.OPEN, AlertStatus.ESCALATED) or m.level != state.level:
            return Decision.answer(state, {"stale": True})  # acknowledged meanwhile, or an older deadline
        late = f"（提醒迟到{int(ctx.late_by.total_seconds())}秒）" if ctx.is_late else ""
        missed = state.contacts[state.level]
        if state.level + 1 < len(state.contacts):
            new = msgspec.structs.replace(
                state, status=ALERT.step(state.status, "escalate"), level=state.level + 1,
                steps=[*state.steps, Step(ctx.now, "escalated", state.contacts[state.level + 1],
                                          f"{state.names[state.level]}未在时限内确认{late}")])
            return self._alert_contact(new, ctx, "escalated", first=len(state.steps))
        new = msgspec.structs.replace(
            state, status=ALERT.step(state.status, "exhaust"), deadline=None,
            steps=[*state.steps, Step(ctx.now, "unanswered", missed, f"所有联系人均未在时限内确认{late}")])
        alarm = Tell(make_address("alert-alarm", state.alert_id),
                     Unanswered(state.alert_id, state.kind, state.department, len(state.contacts)))
        return Decision(new, reply=view(new), tells=(alarm,), deliveries=self._deliveries(new, None),
                        records=self._records(new, ctx, len(state.steps)),
                        events=(Event("AlertUnanswered", {"alert": state.alert_id}),))

    def _ack(self, state: AlertState, m: Acknowledge, ctx: Context) -> Decision[AlertState]:
        if state.status == AlertStatus.NEW:
            raise Refusal("没有这条警报", code="not_found")
        if m.account_id not in notified(state):
            raise Refusal("只有已被通知的联系人可以确认该警报", code="alert_not_contact")
        if state.status == AlertStatus.ACKNOWLEDGED:
            who = state.names[state.contacts.index(state.acked_by)] if state.acked_by in state.contacts else ""
            at = state.acked_at.isoformat() if state.acked_at else ""
            raise Refusal(f"该警报已由{who}于{at}确认", code="alert_acknowledged")
        device = m.device.strip()[:64]
        if not device:
            raise Refusal("确认需要设备标识", code="invalid")
        name = state.names[state.contacts.index(m.account_id)]
        new = msgspec.structs.replace(
            state, status=ALERT.step(state.status, "ack"), acked_by=m.account_id, acked_at=ctx.now,
            device=device, deadline=None,
            steps=[*state.steps, Step(ctx.now, "acknowledged", m.account_id, f"{name}，设备 {device}")])
        return Decision(new, reply=view(new), cancel_reminders=(ACK_KEY,), deliveries=self._deliveries(new, None),
                        records=self._records(new, ctx, len(state.steps)),
                        events=(Event("AlertAcknowledged", {"alert": state.alert_id, "by": m.account_id,
                                                            "device": device}),))

    # ---- output --------------------------------------------------------------------------------

    @staticmethod
    def _deliveries(state: AlertState, raised_to: str | None) -> tuple[Deliver, ...]:
        body = view(state)
        return tuple(Deliver(account, "alert.raised" if account == raised_to else "alert.updated", body,
                             sensitive=True)
                     for account in notified(state))

    @staticmethod
    def _records(state: AlertState, ctx: Context, first: int) -> tuple[Record, ...]:
        """The alert's row and the steps from ``first`` on (steps are only ever appended)."""
        row: dict[str, Any] = {
            "kind": state.kind, "status": state.status.value, "patient_id": state.patient_id,
            "patient_label": state.patient[:40], "item": state.item[:100], "value": state.value[:60],
            "flag": state.flag[:8], "department_id": state.department_id[:32], "department": state.department[:100],
            "source": state.source[:120], "contacts": ",".join(state.contacts), "notified": ",".join(notified(state)),
            "level": state.level, "current_account_id": state.contacts[state.level],
            "ack_seconds": round(state.ack_seconds), "raised_at": state.raised_at, "deadline_at": state.deadline,
            "acked_by": state.acked_by or None, "acked_at": state.acked_at, "ack_device": state.device or None,
            "updated_at": ctx.now, "steps": len(state.steps)}
        records = [Record("clinical_alerts", {"id": state.alert_id}, row)]
        for seq, step in enumerate(state.steps[first:], start=first):
            records.append(Record("alert_steps", {"alert_id": state.alert_id, "seq": seq}, {
                "at": step.at, "action": step.action, "account_id": step.target or None, "note": step.note[:200]}))
        return tuple(records)


def notified(state: AlertState) -> list[str]:
    """The contacts alerted so far (the current one and the earlier ones)."""
    if state.status == AlertStatus.NEW:
        return []
    return state.contacts[: state.level + 1]


def view(state: AlertState) -> dict[str, Any]:
    """What a workstation shows (the body of ``alert.*`` deliveries and of GetAlert)."""
    return {
        "alert_id": state.alert_id, "kind": state.kind, "status": state.status.value,
        "patient": state.patient, "patient_id": state.patient_id, "item": state.item, "value": state.value,
        "flag": state.flag, "department": state.department, "level": state.level,
        "contacts": [{"account_id": a, "name": n, "alerted": i <= state.level and state.status != AlertStatus.NEW}
                     for i, (a, n) in enumerate(zip(state.contacts, state.names, strict=True))],
        "current": state.contacts[state.level] if state.contacts else None,
        "raised_at": state.raised_at.isoformat() if state.raised_at else None,
        "deadline": state.deadline.isoformat() if state.deadline else None,
        "acked_by": state.acked_by or None,
        "acked_by_name": (state.names[state.contacts.index(state.acked_by)]
                          if state.acked_by in state.contacts else None),
        "acked_at": state.acked_at.isoformat() if state.acked_at else None,
        "device": state.device or None,
        "steps": [{"at": s.at.isoformat(), "action": s.action, "target": s.target, "note": s.note}
                  for s in state.steps],
    }
