"""The audit trail (ADM-7): who did what, to what, when, from where, with what outcome.

Append-only and tamper-evident. Entries are numbered 1, 2, 3 ... without gaps and each carries
``hash = HMAC-SM3(integrity key, "audit" || prev_hash || canonical JSON of the entry)`` where
``prev_hash`` is the previous entry's hash (64 zeros before the first). The integrity key lives in
the key ring, outside the database, so whoever can write to the database can still not forge a
hash: :meth:`AuditLog.verify_chain` finds an edited entry (its hash no longer matches), a deleted
one (a gap in the numbers, or a link to an entry that is gone) and reordered ones (intact entries
linked to the wrong predecessor), and a truncated end (the chain head, kept in ``audit_head``, points
past the last entry).

Appends are serialised by locking the single ``audit_head`` row (``SELECT ... FOR UPDATE``), which
holds the number and hash of the last entry; so the chain stays linear when many requests append at
once, and an append inside a transaction that rolls back leaves no trace at all. Since the head
lock is held through each commit, :meth:`AuditLog.append` groups the entries of concurrent callers
into one transaction (group commit) instead of paying one commit round per entry.

Errors: ``ValueError`` for a malformed entry (a bug in the caller), :class:`AuditWriteFailed` when
the database cannot take it, :class:`AuditChainBroken` from a purge that would erase a broken chain.

Retention: :meth:`AuditLog.purge_older_than` removes the oldest entries (never fewer than six months
old, the Cybersecurity Law's minimum) after checking that they still verify, and records the last
removed entry's number and hash as the *anchor* the first remaining entry links to, so what is left
stays verifiable.

What the chain cannot show by itself: someone with write access to both tables can cut entries off
the end and move the head back to an earlier, valid state. Against that, ship the head
(:meth:`AuditLog.head`) to a place the database cannot write (ops log, SIEM) periodically.

Deployment: nothing is revoked here at database level because it cannot be done portably, but
production should ``GRANT SELECT, INSERT ON audit_log TO <app role>`` and
``GRANT SELECT, UPDATE ON audit_head TO <app role>`` only (no UPDATE or DELETE on ``audit_log``),
and run the retention purge under a separate maintenance role that may also DELETE.

Never put secrets or unmasked personal data (ID numbers, phone numbers, medical text) in an entry's
``detail``: mask them first (:mod:`carehub.identity.masking`).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import enum
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import asyncpg
import trio

from .crypto import canonical_json, hmac_sm3_equal
from .db import Database
from .keyring import KeyRing

__all__ = [
    "GENESIS_HASH",
    "MIN_RETENTION",
    "AuditChainBroken",
    "AuditEntry",
    "AuditHead",
    "AuditLog",
    "AuditRecord",
    "AuditWriteFailed",
    "ChainProblem",
    "ChainReport",
    "Outcome",
]

GENESIS_HASH = "0" * 64
#: The Cybersecurity Law (Art. 21) asks for network logs kept at least six months.
MIN_RETENTION = dt.timedelta(days=183)
MAX_SEARCH_LIMIT = 1000
MAX_EXPORT_LIMIT = 100_000
MAX_GROUP_COMMIT = 500
WRITE_TIMEOUT_SECONDS = 30.0

_ACTION = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_COLUMNS = "id, at, actor_id, actor_roles, action, target, outcome, source_ip, detail, prev_hash, hash"
_CSV_HEADER = [c.strip() for c in _COLUMNS.split(",")]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class Outcome(enum.StrEnum):
    OK = "ok"
    DENIED = "denied"
    ERROR = "error"


ChainProblem = Literal["edited", "deleted", "reordered", "head"]


class AuditWriteFailed(Exception):
    """An entry could not be recorded (database unavailable); the cause is chained."""


class AuditChainBroken(Exception):
    """An operation that needs an intact chain (the retention purge) found it broken."""

    def __init__(self, report: ChainReport) -> None:
        super().__init__(report.message)
        self.report = report


@dataclasses.dataclass(frozen=True, slots=True)
class AuditEntry:
    """What to record. ``at`` defaults to the time the entry is appended.

    ``action`` is dotted lower case (``auth.login``, ``auth.login_failed``, ``record.read``,
    ``record.write``, ``role.grant``); ``target`` names the object (``patient/P1/records``);
    ``detail`` is a small JSON object with no unmasked personal data.
    """

    action: str
    target: str = ""
    outcome: Outcome | str = Outcome.OK
    actor_id: str | None = None
    actor_roles: Iterable[str] = ()
    source_ip: str | None = None
    detail: Mapping[str, Any] | None = None
    at: dt.datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class AuditRecord:
    """A stored entry."""

    id: int
    at: dt.datetime
    actor_id: str | None
    actor_roles: tuple[str, ...]
    action: str
    target: str
    outcome: Outcome
    source_ip: str | None
    detail: dict[str, Any]
    prev_hash: str
    hash: str


@dataclasses.dataclass(frozen=True, slots=True)
class AuditHead:
    """The chain's end and its anchor (the last entry removed by retention, 0 if none)."""

    last_id: int
    last_hash: str
    anchor_id: int
    anchor_hash: str
    anchor_at: dt.datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class ChainReport:
    """The result of :meth:`AuditLog.verify_chain`: ``ok``, or the first entry found wrong and why."""

    ok: bool
    checked: int
    first_bad_id: int | None = None
    problem: ChainProblem | None = None
    message: str = "audit chain intact"


@dataclasses.dataclass(frozen=True, slots=True)
class _Prepared:
    at: dt.datetime | None
    actor_id: str | None
    actor_roles: str
    action: str
    target: str
    outcome: str
    source_ip: str | None
    detail: str


@dataclasses.dataclass(slots=True, eq=False)
class _Waiter:
    prepared: _Prepared
    record: AuditRecord | None = None
    error: AuditWriteFailed | None = None


def _clip(value: str | None, limit: int) -> str | None:
    # an audit entry must not be lost because a caller passed an over-long string
    return None if value is None else value[:limit]


def _prepare(entry: AuditEntry) -> _Prepared:
    if not isinstance(entry.action, str) or len(entry.action) > 100 or not _ACTION.match(entry.action):
        raise ValueError(f"audit action must be dotted lower case like 'auth.login', got {entry.action!r}")
    try:
        outcome = Outcome(entry.outcome).value
    except ValueError:
        raise ValueError(f"audit outcome must be one of ok, denied, error; got {entry.outcome!r}") from None
    if entry.at is not None and entry.at.tzinfo is None:
        raise ValueError("audit time must be timezone-aware")
    if isinstance(entry.actor_roles, str):
        raise TypeError("actor_roles is a collection of role names, not one string")
    roles = ",".join(sorted(set(entry.actor_roles)))
    if len(roles) > 200:
        raise ValueError("actor roles longer than 200 characters")
    detail = dict(entry.detail) if entry.detail is not None else {}
    return _Prepared(
        at=entry.at,
        actor_id=_clip(entry.actor_id, 64),
        actor_roles=roles,
        action=entry.action,
        target=_clip(entry.target, 300) or "",
        outcome=outcome,
        source_ip=_clip(entry.source_ip, 64),
        # default=str: an entry is not lost over a date or a UUID in its detail
        detail=json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str),
    )


def _iso(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _entry_hash(
    keyring: KeyRing,
    prev_hash: str,
    at: dt.datetime,
    actor_id: str | None,
    actor_roles: str,
    action: str,
    target: str,
    outcome: str,
    source_ip: str | None,
    detail: str,
) -> str:
    # the id is not hashed: an entry's place is fixed by the links, which lets verification tell
    # an intact entry in the wrong place (reordered) from a changed one (edited)
    content = canonical_json(
        {
            "at": _iso(at),
            "actor_id": actor_id,
            "actor_roles": actor_roles,
            "action": action,
            "target": target,
            "outcome": outcome,
            "source_ip": source_ip,
            "detail": detail,
        }
    )
    return keyring.mac("audit", prev_hash.encode("ascii") + content)


def _record_hash(keyring: KeyRing, r: asyncpg.Record) -> str:
    return _entry_hash(
        keyring, r["prev_hash"], r["at"], r["actor_id"], r["actor_roles"], r["action"], r["target"],
        r["outcome"], r["source_ip"], r["detail"],
    )


def _record(r: asyncpg.Record) -> AuditRecord:
    try:
        detail = json.loads(r["detail"])
    except ValueError:
        detail = {"unparsable": r["detail"]}
    return AuditRecord(
        id=r["id"],
        at=r["at"],
        actor_id=r["actor_id"],
        actor_roles=tuple(x for x in r["actor_roles"].split(",") if x),
        action=r["action"],
        target=r["target"],
        outcome=Outcome(r["outcome"]),
        source_ip=r["source_ip"],
        detail=detail if isinstance(detail, dict) else {"value": detail},
        prev_hash=r["prev_hash"],
        hash=r["hash"],
    )


def _head(r: asyncpg.Record) -> AuditHead:
    return AuditHead(r["last_id"], r["last_hash"], r["anchor_id"], r["anchor_hash"], r["anchor_at"])


class _ChainChecker:
    """Feed entries in id order from just after the anchor; the first problem is kept."""

    def __init__(self, keyring: KeyRing, head: AuditHead) -> None:
        self.keyring = keyring
        self.expected_id = head.anchor_id + 1
        self.prev_hash = head.anchor_hash
        self.checked = 0
        self.problem: ChainReport | None = None
        self.dangling_link: tuple[int, str] | None = None  # (entry id, its prev_hash): resolved by the caller

    def fail(self, entry_id: int, problem: ChainProblem, message: str) -> None:
        self.problem = ChainReport(False, self.checked, entry_id, problem, message)

    def feed(self, r: asyncpg.Record) -> bool:
        """Check one entry; False once a problem is found (stop feeding)."""
        entry_id: int = r["id"]
        if not hmac_sm3_equal(_record_hash(self.keyring, r), r["hash"]):
            self.fail(entry_id, "edited", f"audit entry {entry_id} does not match its hash: edited or forged")
            return False
        if entry_id > self.expected_id:
            missing = (
                f"entry {self.expected_id} is" if entry_id == self.expected_id + 1
                else f"entries {self.expected_id} to {entry_id - 1} are"
            )
            self.fail(self.expected_id, "deleted", f"audit {missing} missing")
            return False
        if entry_id < self.expected_id:
            self.fail(entry_id, "reordered", f"audit entry {entry_id} lies before the retention anchor")
            return False
        if not hmac_sm3_equal(r["prev_hash"], self.prev_hash):
            self.dangling_link = (entry_id, r["prev_hash"])
            return False
        self.prev_hash = r["hash"]
        self.expected_id += 1
        self.checked += 1
        return True

    async def resolve_link(self, conn: asyncpg.Connection) -> None:
        """Name the broken link: to an entry elsewhere in the log (reordered) or to none (deleted)."""
        assert self.dangling_link is not None
        entry_id, prev_hash = self.dangling_link
        other = await conn.fetchval("SELECT id FROM audit_log WHERE hash = $1", prev_hash)
        if other is not None:
            self.fail(entry_id, "reordered", f"audit entry {entry_id} follows entry {other} in the chain, not"
                      f" entry {entry_id - 1}: entries were reordered")
        else:
            self.fail(entry_id, "deleted", f"audit entry {entry_id} links to an entry that no longer exists:"
                      " entries were deleted and renumbered")

    def finish(self, head: AuditHead) -> ChainReport:
        if self.problem is not None:
            return self.problem
        last_id = self.expected_id - 1
        if last_id < head.last_id:
            self.fail(last_id + 1, "deleted", f"audit entries {last_id + 1} to {head.last_id} are missing"
                      " (the end of the log was cut off)")
        elif last_id > head.last_id or not hmac_sm3_equal(self.prev_hash, head.last_hash):
            self.fail(head.last_id, "head", f"the audit head (entry {head.last_id}) does not match the"
                      f" last entry {last_id}: entries added or the head moved outside CareHub")
        if self.problem is not None:
            return self.problem
        return ChainReport(True, self.checked)


class AuditLog:
    """The audit trail over a :class:`Database`, hashing with the key ring's integrity key."""

    def __init__(self, db: Database, keyring: KeyRing) -> None:
        self.db = db
        self.keyring = keyring
        self._pending: list[_Waiter] = []  # bounded by the callers waiting in append()
        self._flush_lock = trio.Lock()

    # --- writing ---------------------------------------------------------------------------

    async def append(self, entry: AuditEntry) -> AuditRecord:
        """Record one entry; returns once it is committed.

        Group commit: appends arriving while a batch is being written wait and then go together
        in the next transaction (one crossing, one lock of the chain head, one commit), so the
        rate is not capped at one commit round per entry. Alone, an entry goes at once.
        """
        waiter = _Waiter(_prepare(entry))
        self._pending.append(waiter)
        try:
            while waiter.record is None and waiter.error is None:
                async with self._flush_lock:  # FIFO: the holder writes everything queued so far
                    if waiter.record is None and waiter.error is None:
                        await self._flush()
        except BaseException:  # cancelled while queued: do not leave the entry behind
            if waiter in self._pending:
                self._pending.remove(waiter)
            raise
        if waiter.error is not None:
            raise waiter.error
        assert waiter.record is not None
        return waiter.record

    async def _flush(self) -> None:
        batch, self._pending = self._pending[:MAX_GROUP_COMMIT], self._pending[MAX_GROUP_COMMIT:]
        try:
            # shielded: the batch carries other callers' entries; a started write is finished
            # (or times out) rather than abandoned half-way because one caller was cancelled
            with trio.CancelScope(shield=True), trio.fail_after(WRITE_TIMEOUT_SECONDS):
                records = await self.db.run(self._append_aio, [w.prepared for w in batch])
        except Exception as err:
            for w in batch:
                w.error = AuditWriteFailed(f"audit entry {w.prepared.action} not recorded: {err}")
                w.error.__cause__ = err
            return
        for w, record in zip(batch, records, strict=True):
            w.record = record

    async def append_many(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Record several entries, all or none, in one transaction and one crossing."""
        prepared = [_prepare(e) for e in entries]
        if not prepared:
            return []
        return await self.db.run(self._append_aio, prepared)

    async def append_in(self, conn: asyncpg.Connection, entry: AuditEntry) -> AuditRecord:
        """Record an entry inside the caller's transaction (an asyncio-side coroutine, for use in a
        storage operation run by :meth:`Database.run`): it commits or rolls back with that work.

        The chain head stays locked until that transaction ends, serialising other appends: call
        this last in the transaction.
        """
        records = await self._append_aio(conn, [_prepare(entry)])
        return records[0]

    async def _append_aio(self, conn: asyncpg.Connection, prepared: list[_Prepared]) -> list[AuditRecord]:
        async with conn.transaction():  # a savepoint when the caller already has a transaction
            head = await conn.fetchrow("SELECT last_id, last_hash FROM audit_head WHERE id = 1 FOR UPDATE")
            if head is None:
                raise RuntimeError("audit_head row missing: is migration 0002 applied?")
            last_id: int = head["last_id"]
            last_hash: str = head["last_hash"]
            now = dt.datetime.now(dt.UTC)  # taken under the lock, so times follow the order of entries
            rows = []
            records = []
            for p in prepared:
                last_id += 1
                at = p.at if p.at is not None else now
                h = _entry_hash(
                    self.keyring, last_hash, at, p.actor_id, p.actor_roles, p.action, p.target, p.outcome,
                    p.source_ip, p.detail,
                )
                rows.append((last_id, at, p.actor_id, p.actor_roles, p.action, p.target, p.outcome, p.source_ip,
                             p.detail, last_hash, h))
                records.append(AuditRecord(
                    last_id, at, p.actor_id, tuple(x for x in p.actor_roles.split(",") if x), p.action, p.target,
                    Outcome(p.outcome), p.source_ip, json.loads(p.detail), last_hash, h,
                ))
                last_hash = h
            await conn.executemany(
                f"INSERT INTO audit_log ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)", rows
            )
            await conn.execute("UPDATE audit_head SET last_id = $1, last_hash = $2 WHERE id = 1", last_id, last_hash)
        return records

    # --- reading ---------------------------------------------------------------------------

    @staticmethod
    def _where(
        actor: str | None,
        action: str | None,
        target_prefix: str | None,
        since: dt.datetime | None,
        until: dt.datetime | None,
        outcome: Outcome | str | None,
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []

        def add(sql: str, value: Any) -> None:
            args.append(value)
            clauses.append(sql.format(f"${len(args)}"))

        if actor is not None:
            add("actor_id = {}", actor)
        if action is not None:
            add("action = {}", action)
        if target_prefix:
            escaped = target_prefix.replace("!", "!!").replace("%", "!%").replace("_", "!_")
            add("target LIKE {} ESCAPE '!'", escaped + "%")
        if since is not None:
            add("at >= {}", since)
        if until is not None:
            add("at < {}", until)
        if outcome is not None:
            try:
                add("outcome = {}", Outcome(outcome).value)
            except ValueError:
                raise ValueError(f"outcome must be one of ok, denied, error; got {outcome!r}") from None
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    async def search(
        self,
        actor: str | None = None,
        action: str | None = None,
        target_prefix: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        outcome: Outcome | str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditRecord]:
        """Entries matching every given filter, newest first; ``since`` inclusive, ``until`` exclusive."""
        if not 1 <= limit <= MAX_SEARCH_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_SEARCH_LIMIT}")
        if offset < 0:
            raise ValueError("offset must not be negative")
        where, args = self._where(actor, action, target_prefix, since, until, outcome)
        sql = f"SELECT {_COLUMNS} FROM audit_log{where} ORDER BY id DESC LIMIT {int(limit)} OFFSET {int(offset)}"
        return [_record(r) for r in await self.db.fetch(sql, *args)]

    async def export_csv(
        self,
        actor: str | None = None,
        action: str | None = None,
        target_prefix: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        outcome: Outcome | str | None = None,
        limit: int = 10_000,
    ) -> str:
        """Matching entries as CSV, oldest first, with a header row.

        Cells starting with ``= + - @`` get a leading ``'`` so a spreadsheet does not run them as
        formulas (values such as a failed login name come from outside).
        """
        if not 1 <= limit <= MAX_EXPORT_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_EXPORT_LIMIT}")
        where, args = self._where(actor, action, target_prefix, since, until, outcome)
        sql = f"SELECT {_COLUMNS} FROM audit_log{where} ORDER BY id LIMIT {int(limit)}"
        rows = await self.db.fetch(sql, *args)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(_CSV_HEADER)
        for r in rows:
            writer.writerow([_csv_cell(r[c]) for c in _CSV_HEADER])
        return out.getvalue()

    async def head(self) -> AuditHead:
        r = await self.db.fetchrow("SELECT last_id, last_hash, anchor_id, anchor_hash, anchor_at FROM audit_head")
        if r is None:
            raise RuntimeError("audit_head row missing: is migration 0002 applied?")
        return _head(r)

    # --- verification and retention --------------------------------------------------------

    async def verify_chain(self) -> ChainReport:
        """Recompute every hash and link from the anchor to the head, on one consistent snapshot."""
        return await self.db.run(self._verify_aio)

    async def _verify_aio(self, conn: asyncpg.Connection) -> ChainReport:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            r = await conn.fetchrow("SELECT last_id, last_hash, anchor_id, anchor_hash, anchor_at FROM audit_head")
            if r is None:
                raise RuntimeError("audit_head row missing: is migration 0002 applied?")
            head = _head(r)
            checker = _ChainChecker(self.keyring, head)
            async for row in conn.cursor(f"SELECT {_COLUMNS} FROM audit_log ORDER BY id", prefetch=2000):
                if not checker.feed(row):
                    break
            if checker.dangling_link is not None:
                await checker.resolve_link(conn)
            return checker.finish(head)

    async def purge_older_than(self, cutoff: dt.datetime, *, now: dt.datetime | None = None) -> int:
        """Remove the entries older than ``cutoff`` (the oldest unbroken run of them) and anchor
        the chain at the last one removed. Returns how many were removed.

        Refuses a cutoff less than :data:`MIN_RETENTION` (six months) ago, and raises
        :class:`AuditChainBroken` rather than erase entries whose chain does not verify.
        """
        if cutoff.tzinfo is None:
            raise ValueError("cutoff must be timezone-aware")
        now = dt.datetime.now(dt.UTC) if now is None else now
        if cutoff > now - MIN_RETENTION:
            raise ValueError(
                f"audit entries are kept at least {MIN_RETENTION.days} days; cutoff {cutoff.isoformat()} is too recent"
            )
        return await self.db.run(self._purge_aio, cutoff)

    async def _purge_aio(self, conn: asyncpg.Connection, cutoff: dt.datetime) -> int:
        async with conn.transaction():
            r = await conn.fetchrow(
                "SELECT last_id, last_hash, anchor_id, anchor_hash, anchor_at FROM audit_head WHERE id = 1 FOR UPDATE"
            )
            if r is None:
                raise RuntimeError("audit_head row missing: is migration 0002 applied?")
            head = _head(r)
            first_kept = await conn.fetchval("SELECT min(id) FROM audit_log WHERE at >= $1", cutoff)
            upto: int = head.last_id if first_kept is None else first_kept - 1
            if upto <= head.anchor_id:
                return 0
            # never erase evidence unread: what is about to go must still verify
            checker = _ChainChecker(self.keyring, head)
            last: asyncpg.Record | None = None
            async for row in conn.cursor(
                f"SELECT {_COLUMNS} FROM audit_log WHERE id <= $1 ORDER BY id", upto, prefetch=2000
            ):
                if not checker.feed(row):
                    break
                last = row
            if checker.dangling_link is not None:
                await checker.resolve_link(conn)
            if checker.problem is None and (last is None or last["id"] != upto):
                checker.fail(checker.expected_id, "deleted", f"audit entries {checker.expected_id} to {upto} are"
                             " missing")
            if checker.problem is not None:
                raise AuditChainBroken(checker.problem)
            assert last is not None
            status = await conn.execute("DELETE FROM audit_log WHERE id <= $1", upto)
            await conn.execute(
                "UPDATE audit_head SET anchor_id = $1, anchor_hash = $2, anchor_at = $3 WHERE id = 1",
                upto, last["hash"], last["at"],
            )
            return int(status.split()[-1])


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    text = _iso(value) if isinstance(value, dt.datetime) else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text
