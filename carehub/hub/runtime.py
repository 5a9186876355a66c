"""The actor runtime: activation, mailboxes, supervision, durable commits, reminders.

Invariants:

- One activation per address: activation is decided synchronously (no checkpoint between the
  lookup and the insert), so concurrent first asks find the same activation.
- One message at a time per actor: each activation has one task draining its mailbox.
- Durable before acknowledged: a decision's state, events, deliveries, tells and reminders are
  committed in one transaction before the asker gets its reply; if the commit fails, memory is
  left as it was and the asker gets :class:`StorageUnavailable`.
- Nothing dropped: tells and reminders are rows until the target's own commit deletes them, so
  a crash between commit and dispatch only delays them (at-least-once dispatch, exactly-once
  effect).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import msgspec
import trio

from carehub.eventloop import loop_load

from .behaviour import SYSTEM, Address, Behaviour, Caller, Context, Decision, Effect, message_name, split_address
from .errors import (
    ActorCrashed,
    ActorQuarantined,
    AlreadyHandled,
    AskTimeout,
    BadMessage,
    HubError,
    HubStopping,
    MailboxFull,
    Refusal,
    StorageUnavailable,
    UnknownActorKind,
    VersionConflict,
)
from .store import Commit, DeliveryRow, HubStore, ScheduledRow, StreamItem
from .topics import Priority, Topics

log = logging.getLogger("carehub.hub")

_json_encode = msgspec.json.Encoder().encode


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class DeliverySink(Protocol):
    def delivered(self, items: Sequence[StreamItem]) -> None:
        """Called after commit with the new stream items, to push to live connections."""
        ...


class _NoSink:
    def delivered(self, items: Sequence[StreamItem]) -> None:
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class HubSettings:
    mailbox_size: int = 256
    #: How long a sender waits for room in a full mailbox before MailboxFull.
    mailbox_wait_seconds: float = 2.0
    ask_timeout_seconds: float = 30.0
    idle_seconds: float = 300.0
    crash_limit: int = 5
    crash_window_seconds: float = 60.0
    #: Reminders later than this are marked late.
    late_tolerance_seconds: float = 1.0
    scheduler_batch: int = 500
    scheduler_poll_seconds: float = 5.0
    scheduler_concurrency: int = 64
    retry_backoff_seconds: float = 5.0
    #: Effects (calls to outside systems: a HIS push, an SMS) wait while the event loop is busy, i.e. while
    #: the hub has a queue of people's frames to answer (a booking release; :mod:`carehub.eventloop`), but
    #: never longer than this.
    effect_defer_max_seconds: float = 5.0


class _Reply:
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def succeed(self, value: Any) -> None:
        self.value = value
        self.done.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.set()


@dataclasses.dataclass(slots=True)
class _Letter:
    message: msgspec.Struct
    caller: Caller
    reply: _Reply | None
    consumed: str | None = None
    late_by: dt.timedelta = dt.timedelta(0)


@dataclasses.dataclass(slots=True)
class Quarantine:
    address: str
    reason: str
    since: dt.datetime
    crashes: int


@dataclasses.dataclass(slots=True)
class Alarm:
    at: dt.datetime
    level: str
    text: str


class _Activation:
    __slots__ = (
        "address",
        "behaviour",
        "crashes",
        "enqueued",
        "handled",
        "key",
        "last_active",
        "recv",
        "send",
        "state",
        "version",
    )

    def __init__(self, address: Address, key: str, behaviour: Behaviour[Any], size: int) -> None:
        self.address = address
        self.key = key
        self.behaviour = behaviour
        self.send, self.recv = trio.open_memory_channel[_Letter](size)
        self.state: Any = None
        self.version = 0
        self.enqueued: collections.deque[float] = collections.deque()
        self.crashes: collections.deque[float] = collections.deque()
        self.last_active = time.monotonic()
        self.handled = 0

    @property
    def depth(self) -> int:
        return len(self.enqueued)


class _Rate:
    """Messages per second over the last few seconds."""

    def __init__(self, window: int = 5) -> None:
        self._window = window
        self._buckets: collections.deque[list[int]] = collections.deque()

    def add(self, n: int = 1) -> None:
        sec = int(time.monotonic())
        if self._buckets and self._buckets[-1][0] == sec:
            self._buckets[-1][1] += n
        else:
            self._buckets.append([sec, n])
            while self._buckets and self._buckets[0][0] <= sec - self._window - 1:
                self._buckets.popleft()

    def per_second(self) -> float:
        now = int(time.monotonic())
        total = sum(n for sec, n in self._buckets if now - self._window <= sec < now)
        return total / self._window


class Hub:
    """The actor system of one node. Use :func:`open_hub`."""

    def __init__(
        self,
        store: HubStore,
        behaviours: Iterable[Behaviour[Any]],
        settings: HubSettings | None = None,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        effects: Iterable[Effect] = (),
    ) -> None:
        self.store = store
        self.settings = settings or HubSettings()
        self.behaviours: dict[str, Behaviour[Any]] = {b.kind: b for b in behaviours}
        self.effects: dict[str, Effect] = {}
        for effect in effects:
            self.add_effect(effect)
        self.topics = Topics()
        self.sink: DeliverySink = _NoSink()
        self.clock = clock
        self._activations: dict[Address, _Activation] = {}
        self.quarantined: dict[str, Quarantine] = {}
        self.alarms: collections.deque[Alarm] = collections.deque(maxlen=100)
        self._nursery: trio.Nursery | None = None
        self._scheduler_wake = trio.Event()
        self._in_flight: set[str] = set()
        self._scheduler_limit = trio.CapacityLimiter(self.settings.scheduler_concurrency)
        self._stopping = False
        # counters for /metrics and the ops dashboard
        self.messages_total = 0
        self.errors_total: collections.Counter[str] = collections.Counter()
        self.crashes_total = 0
        self.pushback_total = 0
        self.effects_done = 0
        #: effects that waited for the hub to be less busy (see _wait_until_not_busy)
        self.effects_deferred = 0
        self.effects_failed = 0
        self.reminders_fired = 0
        self.reminders_late = 0
        self.rate = _Rate()
        self.next_reminder_at: dt.datetime | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        loop_load()  # measuring from now (effects ask it)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._scheduler)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._stopping = True

    def add_effect(self, effect: Effect) -> None:
        """Register an I/O step kind (before or while running); actors reach it by durable tells."""
        if effect.kind in self.behaviours:
            raise ValueError(f"{effect.kind!r} is already an actor kind")
        self.effects[effect.kind] = effect

    # ---- sending ---------------------------------------------------------------------------

    def parse(self, address: str, type_name: str, body: Any) -> tuple[Address, msgspec.Struct]:
        """Turn wire data into a typed message for ``address``; raises BadMessage/UnknownActorKind."""
        messages: Any
        try:
            behaviour, _ = self._behaviour_of(address)
            kind, messages = behaviour.kind, behaviour.messages
        except UnknownActorKind:
            effect = self.effects.get(address.partition("/")[0])
            if effect is None:
                raise
            kind, messages = effect.kind, effect.messages
        cls = messages.get(type_name)
        if cls is None:
            raise BadMessage(
                f"{kind} actors accept {', '.join(sorted(messages))}; got {type_name!r}"
            )
        try:
            message = msgspec.convert(body if body is not None else {}, cls, strict=True)
        except msgspec.ValidationError as err:
            raise BadMessage(f"{type_name}: {err}") from None
        return Address(address), message

    def _behaviour_of(self, address: str) -> tuple[Behaviour[Any], str]:
        try:
            kind, key = split_address(address)
        except ValueError as err:
            raise BadMessage(str(err)) from None
        behaviour = self.behaviours.get(kind)
        if behaviour is None:
            raise UnknownActorKind(f"no actor kind {kind!r}; known kinds: {', '.join(sorted(self.behaviours))}")
        return behaviour, key

    def authorize(self, address: Address, message: msgspec.Struct, caller: Caller) -> bool:
        kind, key = split_address(address)
        return self.behaviours[kind].may_call(caller, key, message)

    async def ask(
        self,
        address: Address | str,
        message: msgspec.Struct,
        *,
        caller: Caller = SYSTEM,
        timeout: float | None = None,
    ) -> Any:
        """Send ``message`` and wait for the reply, which comes after the handler's commit."""
        reply = _Reply()
        await self._post(Address(address), _Letter(message, caller, reply))
        with trio.move_on_after(timeout or self.settings.ask_timeout_seconds):
            await reply.done.wait()
        if not reply.done.is_set():
            raise AskTimeout(f"{address} did not answer {message_name(message)} in time; it may still do so")
        if reply.error is not None:
            raise reply.error
        return reply.value

    async def tell(self, address: Address | str, message: msgspec.Struct, *, caller: Caller = SYSTEM) -> None:
        """Send without waiting for the handler (not durable: use Decision.tells for that)."""
        await self._post(Address(address), _Letter(message, caller, None))

    def _activation(self, address: Address) -> _Activation:
        act = self._activations.get(address)
        if act is not None:
            return act
        if self._stopping or self._nursery is None:
            raise HubStopping("the hub is not running")
        if address in self.quarantined:
            q = self.quarantined[address]
            raise ActorQuarantined(f"{address} is quarantined since {q.since:%H:%M:%S}: {q.reason}")
        behaviour, key = self._behaviour_of(address)
        act = _Activation(address, key, behaviour, self.settings.mailbox_size)
        self._activations[address] = act
        self._nursery.start_soon(self._run_activation, act)
        return act

    async def _post(self, address: Address, letter: _Letter) -> None:
        for _ in range(3):
            act = self._activation(address)
            try:
                act.send.send_nowait(letter)
            except trio.WouldBlock:
                self.pushback_total += 1
                with trio.move_on_after(self.settings.mailbox_wait_seconds):
                    try:
                        await act.send.send(letter)
                    except (trio.ClosedResourceError, trio.BrokenResourceError):
                        continue
                    act.enqueued.append(time.monotonic())
                    return
                raise MailboxFull(
                    f"{address} has {self.settings.mailbox_size} messages waiting; try again shortly"
                ) from None
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                continue  # passivated or quarantined between lookup and send: look again
            act.enqueued.append(time.monotonic())
            return
        raise ActorQuarantined(f"{address} keeps stopping; message not delivered")

    # ---- the activation loop ---------------------------------------------------------------

    async def _run_activation(self, act: _Activation) -> None:
        try:
            try:
                await self._load(act)
            except HubError as err:
                self._retire(act, err)
                return
            while True:
                letter: _Letter | None = None
                with trio.move_on_after(self.settings.idle_seconds):
                    letter = await act.recv.receive()
                if letter is None:
                    if act.depth == 0 and self._activations.get(act.address) is act:
                        # passivate: no checkpoint between this check and the removal
                        self._retire(act, None)
                        return
                    continue
                if act.enqueued:
                    act.enqueued.popleft()
                if act.behaviour.batch_limit > 1 and letter.consumed is None:
                    batch, rest = self._more_letters(act, letter)
                    if len(batch) > 1:
                        await self._handle_batch(act, batch)
                    else:
                        await self._handle(act, letter)
                    if rest is not None and act.address not in self.quarantined:
                        await self._handle(act, rest)
                else:
                    await self._handle(act, letter)
                if act.address in self.quarantined:
                    return
        except trio.Cancelled:
            self._retire(act, HubStopping("the hub is shutting down"))
            raise

    def _retire(self, act: _Activation, error: HubError | None) -> None:
        if self._activations.get(act.address) is act:
            del self._activations[act.address]
        act.send.close()
        while True:
            try:
                letter = act.recv.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            if letter.reply is not None:
                letter.reply.fail(error or HubStopping(f"{act.address} stopped"))
        act.recv.close()
        act.enqueued.clear()

    async def _load(self, act: _Activation) -> None:
        try:
            stored = await self.store.load_state(act.address)
        except HubError:
            raise
        except Exception as err:  # storage down: tell every waiting sender
            raise StorageUnavailable(f"could not load {act.address}: {err}") from err
        if stored.state is None:
            act.state = act.behaviour.initial(act.key)
        else:
            act.state = msgspec.json.decode(stored.state, type=act.behaviour.state_type)
        act.version = stored.version

    async def _handle(self, act: _Activation, letter: _Letter) -> None:
        now = self.clock()
        ctx = Context(act.address, act.key, now, letter.caller, letter.late_by)
        act.last_active = time.monotonic()
        self.messages_total += 1
        self.rate.add()
        act.handled += 1
        try:
            decision = act.behaviour.handle(act.state, letter.message, ctx)
            if not isinstance(decision, Decision):
                raise TypeError(f"handler returned {type(decision).__name__}, not a Decision")
        except Refusal as err:
            self.errors_total[err.code] += 1
            if letter.consumed is not None:
                # a refused reminder is still consumed, or it would fire forever
                await self._commit_quietly(act, Decision.answer(act.state, None), letter, now)
            if letter.reply is not None:
                letter.reply.fail(err)
            return
        except Exception as err:
            self.errors_total["actor_crashed"] += 1
            log.exception("actor %s crashed on %s", act.address, message_name(letter.message))
            crash = ActorCrashed(
                f"{act.address} failed on {message_name(letter.message)} ({type(err).__name__}: {err}); "
                "it restarted from its stored state"
            )
            if letter.reply is not None:
                letter.reply.fail(crash)
            await self._crashed(act, err)
            return
        if decision.writes or letter.consumed is not None:
            try:
                delivered = await self._commit(act, decision, letter, now)
            except HubError as err:
                self.errors_total[err.code] += 1
                if isinstance(err, VersionConflict):
                    await self._reload_quietly(act)
                if letter.reply is not None:
                    letter.reply.fail(err)
                return
            self._after_commit(act, decision, delivered)
        if letter.reply is not None:
            letter.reply.succeed(decision.reply)

    def _more_letters(self, act: _Activation, first: _Letter) -> tuple[list[_Letter], _Letter | None]:
        """``first`` and the plain messages already waiting behind it (up to the batch limit).

        A stored message (reminder, outbox tell) ends the batch: it is returned to be handled on
        its own, because its commit must consume its row.
        """
        batch = [first]
        while len(batch) < act.behaviour.batch_limit:
            try:
                letter = act.recv.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            if act.enqueued:
                act.enqueued.popleft()
            if letter.consumed is not None:
                return batch, letter
            batch.append(letter)
        return batch, None

    async def _handle_batch(self, act: _Activation, letters: list[_Letter]) -> None:
        """Handle several waiting messages in turn, commit once, then answer them all."""
        now = self.clock()
        act.last_active = time.monotonic()
        state = act.state
        outcomes: list[tuple[_Letter, Decision[Any] | HubError]] = []
        crashed: Exception | None = None
        for letter in letters:
            if crashed is not None:  # after a crash the rest are handled one by one, from stored state
                outcomes.append((letter, ActorCrashed(f"{act.address} restarted; send again")))
                continue
            self.messages_total += 1
            self.rate.add()
            act.handled += 1
            ctx = Context(act.address, act.key, now, letter.caller, letter.late_by)
            try:
                decision = act.behaviour.handle(state, letter.message, ctx)
                if not isinstance(decision, Decision):
                    raise TypeError(f"handler returned {type(decision).__name__}, not a Decision")
            except Refusal as err:
                self.errors_total[err.code] += 1
                outcomes.append((letter, err))
                continue
            except Exception as err:
                self.errors_total["actor_crashed"] += 1
                log.exception("actor %s crashed on %s", act.address, message_name(letter.message))
                crashed = err
                outcomes.append((letter, ActorCrashed(
                    f"{act.address} failed on {message_name(letter.message)} ({type(err).__name__}: {err}); "
                    "it restarted from its stored state")))
                continue
            state = decision.state
            outcomes.append((letter, decision))
        decisions = [d for _, d in outcomes if isinstance(d, Decision)]
        merged = _merge(decisions, state)
        if merged is not None and merged.writes:
            try:
                delivered = await self._commit(act, merged, letters[0], now)
            except HubError as err:
                self.errors_total[err.code] += 1
                if isinstance(err, VersionConflict):
                    await self._reload_quietly(act)
                for letter, _ in outcomes:
                    if letter.reply is not None:
                        letter.reply.fail(err)
                return
            self._after_commit(act, merged, delivered)
        for letter, outcome in outcomes:
            if letter.reply is None:
                continue
            if isinstance(outcome, Decision):
                letter.reply.succeed(outcome.reply)
            else:
                letter.reply.fail(outcome)
        if crashed is not None:
            await self._crashed(act, crashed)

    async def _commit(
        self, act: _Activation, decision: Decision[Any], letter: _Letter, now: dt.datetime
    ) -> Sequence[StreamItem]:
        projections = act.behaviour.projections
        for record in decision.records:  # no allocation on the hot path: most decisions have two records
            if record.table not in projections:
                raise BadMessage(f"{act.address} may not write table {record.table!r}: {act.behaviour.kind} declares"
                                 f" {sorted(projections)} as its projections")
        scheduled: list[ScheduledRow] = []
        for tell in decision.tells:
            scheduled.append(self._row(tell.to, tell.message, now, None))
        for remind in decision.reminders:
            scheduled.append(self._row(act.address, remind.message, remind.at, remind.key))
        deliveries = [
            DeliveryRow(d.account_id, d.msg_id or uuid.uuid4().hex, d.type, _json_encode(d.body), d.sensitive)
            for d in decision.deliveries
        ]
        commit = Commit(
            address=act.address,
            kind=act.behaviour.kind,
            expected_version=act.version,
            state=_json_encode(decision.state) if decision.changed else None,
            events=[(e.type, _json_encode(e.body)) for e in decision.events],
            deliveries=deliveries,
            scheduled=scheduled,
            cancel_keys=decision.cancel_reminders,
            consumed=letter.consumed,
            now=now,
            records=decision.records,
        )
        try:
            result = await self.store.commit(commit)
        except HubError:
            raise
        except Exception as err:
            raise StorageUnavailable(f"could not save {act.address}: {err}; nothing was changed") from err
        act.state = decision.state
        act.version = result.version
        if scheduled:
            self._dispatch_scheduled([r for r in scheduled if r.due_at <= now])
            if any(r.due_at > now for r in scheduled):
                self._scheduler_wake.set()
        return result.delivered

    async def _commit_quietly(
        self, act: _Activation, decision: Decision[Any], letter: _Letter, now: dt.datetime
    ) -> None:
        try:
            await self._commit(act, decision, letter, now)
        except HubError as err:
            log.warning("could not consume %s for %s: %s", letter.consumed, act.address, err)

    def _row(self, target: str, message: msgspec.Struct, due: dt.datetime, key: str | None) -> ScheduledRow:
        return ScheduledRow(uuid.uuid4().hex, target, message_name(message), _json_encode(message), due, key)

    def _after_commit(self, act: _Activation, decision: Decision[Any], delivered: Sequence[StreamItem]) -> None:
        if delivered:
            try:
                self.sink.delivered(delivered)
            except Exception:  # a push failure must not undo a commit; clients resume from the stream
                log.exception("push after commit failed for %s", act.address)
        for pub in decision.publishes:
            self.topics.publish(pub.topic, pub.type, pub.body, coalesce=pub.coalesce, priority=Priority.LOW)

    async def _crashed(self, act: _Activation, err: Exception) -> None:
        self.crashes_total += 1
        mono = time.monotonic()
        act.crashes.append(mono)
        while act.crashes and act.crashes[0] < mono - self.settings.crash_window_seconds:
            act.crashes.popleft()
        if len(act.crashes) >= self.settings.crash_limit:
            reason = f"{len(act.crashes)} crashes in {self.settings.crash_window_seconds:.0f}s, last: {err!r}"
            self.quarantined[act.address] = Quarantine(act.address, reason, self.clock(), len(act.crashes))
            self.alarm("critical", f"actor {act.address} quarantined: {reason}")
            self._retire(act, ActorQuarantined(f"{act.address} is quarantined: {reason}"))
            return
        await self._reload_quietly(act)

    async def _reload_quietly(self, act: _Activation) -> None:
        try:
            await self._load(act)
        except HubError as load_err:
            self._retire(act, load_err)

    def release(self, address: str) -> bool:
        """Lift a quarantine (ops); the next message activates the actor afresh."""
        return self.quarantined.pop(address, None) is not None

    def alarm(self, level: str, text: str) -> None:
        log.error("ALARM %s: %s", level, text)
        self.alarms.append(Alarm(self.clock(), level, text))

    # ---- scheduled messages: reminders and outbox tells -------------------------------------

    def _dispatch_scheduled(self, rows: Iterable[ScheduledRow]) -> None:
        assert self._nursery is not None
        for row in rows:
            if row.id in self._in_flight:
                continue
            self._in_flight.add(row.id)
            self._nursery.start_soon(self._fire, row)

    async def _fire(self, row: ScheduledRow) -> None:
        try:
            async with self._scheduler_limit:
                now = self.clock()
                late_by = max(now - row.due_at, dt.timedelta(0))
                try:
                    address, message = self.parse(row.target, row.type, msgspec.json.decode(row.body))
                except HubError as err:
                    # often a kind not registered yet (the app adds its effects once the hub runs, and a restart
                    # finds the sends a crash left due): soon again, backing off to hourly; an alarm if it stays
                    attempts = row.attempts + 1
                    if attempts >= 3:
                        self.alarm("error", f"stored message {row.id} for {row.target} is unreadable: {err}")
                    await self._postpone(row, dt.timedelta(seconds=min(2 ** attempts, 3600)))
                    return
                effect = self.effects.get(row.target.partition("/")[0])
                if effect is not None:
                    await self._wait_until_not_busy()
                    await self._perform(effect, row, address, message, self.clock(), late_by)
                    return
                reply = _Reply()
                letter = _Letter(message, SYSTEM, reply, consumed=row.id, late_by=late_by)
                try:
                    await self._post(address, letter)
                    await reply.done.wait()
                except HubError as err:
                    reply.fail(err)
                if reply.error is None or isinstance(reply.error, Refusal):
                    self.reminders_fired += 1
                    if late_by > dt.timedelta(seconds=self.settings.late_tolerance_seconds):
                        self.reminders_late += 1
                elif not isinstance(reply.error, HubStopping | AlreadyHandled):
                    await self._postpone(row, dt.timedelta(seconds=self.settings.retry_backoff_seconds))
        finally:
            self._in_flight.discard(row.id)

    async def _wait_until_not_busy(self) -> None:
        """Let people's answers go first: an effect is durable and nobody is waiting on its answer, so while the
        loop is busy (thousands of booking frames queued at one instant) it waits, up to
        ``effect_defer_max_seconds``."""
        give_up = trio.current_time() + self.settings.effect_defer_max_seconds
        deferred = False
        load = loop_load()
        while True:
            if not load.busy() or trio.current_time() >= give_up:
                return
            if not deferred:
                deferred = True
                self.effects_deferred += 1
            await trio.sleep(0.05)

    async def _perform(
        self, effect: Effect, row: ScheduledRow, address: Address, message: msgspec.Struct,
        now: dt.datetime, late_by: dt.timedelta,
    ) -> None:
        ctx = Context(address, address.partition("/")[2], now, SYSTEM, late_by)
        try:
            await effect.perform(message, ctx)
        except trio.Cancelled:
            raise
        except Exception as err:
            self.effects_failed += 1
            self.errors_total["effect_failed"] += 1
            attempts = row.attempts + 1
            log.warning("%s %s failed (attempt %d): %s", address, message_name(message), attempts, err)
            if attempts == effect.alarm_after:
                self.alarm("error", f"{address} {message_name(message)} failed {attempts} times, last: {err}")
            await self._postpone(row, dt.timedelta(seconds=effect.retry_after(attempts)))
            return
        self.effects_done += 1
        try:
            await self.store.complete_scheduled(row.id)
        except Exception as err:  # performed again later: effects are idempotent
            log.warning("could not mark %s done: %s", row.id, err)

    async def _postpone(self, row: ScheduledRow, delay: dt.timedelta) -> None:
        try:
            await self.store.postpone_scheduled(row.id, self.clock() + delay)
        except Exception as err:
            log.warning("could not postpone %s: %s", row.id, err)

    async def _scheduler(self) -> None:
        """Fire stored messages when due; catches up on everything missed while down."""
        while True:
            self._scheduler_wake = trio.Event()
            now = self.clock()
            try:
                rows = await self.store.due_scheduled(now, self.settings.scheduler_batch)
                self._dispatch_scheduled(rows)
                self.next_reminder_at = await self.store.next_due()
            except Exception as err:
                log.warning("scheduler could not read stored messages: %s", err)
                rows = []
            wait = self.settings.scheduler_poll_seconds
            if len(rows) >= self.settings.scheduler_batch:
                wait = 0.05
            elif self.next_reminder_at is not None:
                wait = min(wait, max((self.next_reminder_at - self.clock()).total_seconds(), 0.01))
            with trio.move_on_after(wait):
                await self._scheduler_wake.wait()

    # ---- what ops see ----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        by_kind: collections.Counter[str] = collections.Counter()
        depth = 0
        max_depth = 0
        oldest: float | None = None
        for act in self._activations.values():
            by_kind[act.behaviour.kind] += 1
            d = act.depth
            depth += d
            max_depth = max(max_depth, d)
            if act.enqueued and (oldest is None or act.enqueued[0] < oldest):
                oldest = act.enqueued[0]
        return {
            "actors_by_kind": dict(by_kind),
            "actors": len(self._activations),
            "mailbox_depth": depth,
            "mailbox_depth_max": max_depth,
            "oldest_waiting_seconds": 0.0 if oldest is None else round(time.monotonic() - oldest, 3),
            "messages_total": self.messages_total,
            "messages_per_second": round(self.rate.per_second(), 1),
            "errors_total": sum(self.errors_total.values()),
            "errors_by_code": dict(self.errors_total),
            "crashes_total": self.crashes_total,
            "pushback_total": self.pushback_total,
            "effects_done": self.effects_done,
            "effects_deferred": self.effects_deferred,
            "effects_failed": self.effects_failed,
            "reminders_fired": self.reminders_fired,
            "reminders_late": self.reminders_late,
            "reminders_in_flight": len(self._in_flight),
            "next_reminder_at": None if self.next_reminder_at is None else self.next_reminder_at.isoformat(),
            "quarantined": [
                {"address": q.address, "reason": q.reason, "since": q.since.isoformat()}
                for q in self.quarantined.values()
            ],
            "alarms": [{"at": a.at.isoformat(), "level": a.level, "text": a.text} for a in self.alarms],
        }

    def live_actors(self, search: str = "", limit: int = 50) -> list[dict[str, Any]]:
        """Live activations whose address or summary contains ``search``, busiest first."""
        needle = search.lower()
        rows: list[dict[str, Any]] = []
        for act in self._activations.values():
            try:
                summary = act.behaviour.summary(act.state) if act.state is not None else "loading"
            except Exception as err:
                summary = f"(summary failed: {err})"
            if needle and needle not in act.address.lower() and needle not in summary.lower():
                continue
            rows.append(
                {
                    "address": act.address,
                    "kind": act.behaviour.kind,
                    "mailbox": act.depth,
                    "handled": act.handled,
                    "idle_seconds": round(time.monotonic() - act.last_active, 1),
                    "version": act.version,
                    "summary": summary,
                }
            )
        rows.sort(key=lambda r: (-r["mailbox"], -r["handled"], r["address"]))
        return rows[:limit]

    def is_active(self, address: str) -> bool:
        return address in self._activations


def _merge(decisions: Sequence[Decision[Any]], state: Any) -> Decision[Any] | None:
    """One decision doing what ``decisions`` did in turn (a later reminder key cancel wins)."""
    if not decisions:
        return None
    if len(decisions) == 1:
        return decisions[0]
    reminders: list[Any] = []
    cancels: list[str] = []
    for d in decisions:
        for key in d.cancel_reminders:
            reminders = [r for r in reminders if r.key != key]
            cancels.append(key)
        for r in d.reminders:
            if r.key is not None:
                reminders = [x for x in reminders if x.key != r.key]
            reminders.append(r)
    return Decision(
        state=state,
        changed=any(d.changed for d in decisions),
        events=tuple(e for d in decisions for e in d.events),
        deliveries=tuple(x for d in decisions for x in d.deliveries),
        tells=tuple(t for d in decisions for t in d.tells),
        reminders=tuple(reminders),
        cancel_reminders=tuple(dict.fromkeys(cancels)),
        publishes=tuple(p for d in decisions for p in d.publishes),
        records=tuple(r for d in decisions for r in d.records),
    )
