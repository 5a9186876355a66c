"""Actor kinds used by the hub tests: small, but real behaviours run by the real runtime."""

from __future__ import annotations

import datetime as dt

import msgspec
import trio

from carehub.hub import Behaviour, Caller, Context, Decision, Deliver, Effect, Event, Refusal, Remind, Tell


class Tally(msgspec.Struct):
    total: int = 0
    notes: list[str] = msgspec.field(default_factory=list)
    late_notes: list[str] = msgspec.field(default_factory=list)


class Add(msgspec.Struct):
    n: int
    notify: str | None = None  # account to deliver a notice to


class Get(msgspec.Struct):
    pass


class Explode(msgspec.Struct):
    """Makes the handler raise, as a bug would."""


class Refuse(msgspec.Struct):
    pass


class Note(msgspec.Struct):
    text: str


class RemindMe(msgspec.Struct):
    seconds: float
    text: str


class GetNotes(msgspec.Struct):
    pass


class Counter(Behaviour[Tally]):
    kind = "counter"
    state_type = Tally
    messages = {m.__name__: m for m in (Add, Get, Explode, Refuse, Note, RemindMe, GetNotes)}

    def initial(self, key: str) -> Tally:
        return Tally()

    def handle(self, state: Tally, message: msgspec.Struct, ctx: Context) -> Decision[Tally]:
        match message:
            case Add(n=n, notify=notify):
                new = Tally(state.total + n, state.notes, state.late_notes)
                deliveries = ()
                if notify:
                    deliveries = (Deliver(notify, "counter.added", {"counter": ctx.key, "total": new.total}),)
                return Decision(new, reply=new.total, events=(Event("Added", {"n": n}),), deliveries=deliveries)
            case Get():
                return Decision.answer(state, state.total)
            case GetNotes():
                return Decision.answer(state, {"notes": state.notes, "late": state.late_notes})
            case Explode():
                state.notes.append("half-done")  # a buggy handler mutating state before failing
                raise RuntimeError("boom")
            case Refuse():
                raise Refusal("not today")
            case Note(text=text):
                late = [*state.late_notes, text] if ctx.is_late else state.late_notes
                return Decision(Tally(state.total, [*state.notes, text], late))
            case RemindMe(seconds=seconds, text=text):
                at = ctx.now + dt.timedelta(seconds=seconds)
                return Decision(state, reply=at.isoformat(), reminders=(Remind(at, Note(text)),))
        raise Refusal(f"unexpected {message!r}")

    def summary(self, state: Tally) -> str:
        return f"total={state.total}"

    def may_call(self, caller: Caller, key: str, message: msgspec.Struct) -> bool:
        return True


class Ping(msgspec.Struct):
    """For the ``probe`` effect: record that the outside system was called."""

    n: int


class Announce(msgspec.Struct):
    n: int


class Announcer(Behaviour[Tally]):
    """Tells the ``probe`` effect about each announcement (as a booking tells the HIS push)."""

    kind = "announcer"
    state_type = Tally
    messages = {"Announce": Announce}

    def initial(self, key: str) -> Tally:
        return Tally()

    def handle(self, state: Tally, message: msgspec.Struct, ctx: Context) -> Decision[Tally]:
        assert isinstance(message, Announce)
        return Decision(Tally(state.total + 1), reply=message.n, tells=(Tell(f"probe/{ctx.key}", Ping(message.n)),))


class Probe(Effect):
    """An outside system that notes when it was called."""

    kind = "probe"
    messages = {"Ping": Ping}

    def __init__(self) -> None:
        self.calls: list[tuple[int, float]] = []

    async def perform(self, message: msgspec.Struct, ctx: Context) -> None:
        assert isinstance(message, Ping)
        self.calls.append((message.n, trio.current_time()))
