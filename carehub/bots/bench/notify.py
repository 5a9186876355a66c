"""``notify``: notices published by a hospital system, through the simulated providers, reconciled (issue #18).

``./scripts/bench notify [--notices 50000] [--recipients 10000] [--fail-rate 0.1] [--kill]``.

The bench starts the WeChat, SMS and Alipay simulators (:mod:`carehub.bots.wechat_sim`,
:mod:`carehub.bots.sms_gateway`, :mod:`carehub.bots.alipay_sim`), one process each, and its own
hub pointed at them (``CAREHUB_WECHAT_URL`` ... as a deployment configures the real providers);
each simulator answers ``--fail-rate`` of the provider calls with a retryable error
(``/_sim/config`` ``fail_rate``). Through the admin API it makes a partner account with a
``messages.publish`` key and a publish rule, ``--recipients`` patients (phones), and binds each
a WeChat openid and an Alipay user id (``POST /api/v1/admin/channel-bindings``). One recipient in
100 has an openid that does not follow the account, and its notices are narrowed to WeChat: they
must end dead-lettered (WeChat 43004) with that reason. One notice in 10 is narrowed to SMS.
``--listeners`` recipients (default 1,000) sign in, choose their channels (a third Alipay first,
a third WeChat, a third SMS) and hold a ``/ws`` connection each in client processes.

Then ``--notices`` notices (``report.ready``, ``medicine.ready``, ``inpatient.admitted``, round
robin over the recipients) are published in signed batches of ``--batch`` (HMAC-SM3 as a partner
signs: :func:`signed_headers`) to ``POST /api/v1/open/messages/batch``, ``--publishers`` batches
in flight. With ``--kill`` the hub gets a SIGKILL when half of the notices were accepted and is
started again on the same port and data; every batch whose answer was lost is sent again with
the same idempotency keys (the listeners reconnect with ``resume_after``, as the app does).

Measured: ``notices_per_s`` (notices accepted, 202, over the publish phase: first request sent to
last answer), ``p99_ms`` (a batch's request sent to the in-app ``notice`` delivery arriving on the
recipient's WebSocket, over the listeners' notices; with ``--kill`` it includes the downtime).
After the run settles (no notice ``sending``/``retrying``/``deferred``, at most
``--settle-timeout`` s), the reconciliation: ``delivered`` (status ``sent``: an outside channel
took it, or ``in_app``: none was planned), ``dead_lettered`` (status ``dead``; each must carry a
reason: ``dead_without_reason``), ``lost`` (accepted but not final, or missing), ``duplicates``
(per notice and channel, provider messages beyond the first in the simulators' ``/_sim/messages``
logs: WeChat's own ``client_msg_id`` dedupe counts as one), plus ``app_missing`` (listeners'
notices never shown on their WebSocket) and a signed ``GET /api/v1/open/messages/<id>`` of a
sample of the accepted ids (``sample_missing``).
"""

from __future__ import annotations

import argparse
import array
import collections
import contextlib
import dataclasses
import multiprocessing
import multiprocessing.connection
import random
import re
import secrets
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import trio
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac

from .accounts import DEMO_TOTP_SECRET, LOGINS_PER_ADDRESS, sign_in
from .report import array_bytes, emit, latency_fields, note, split
from .wire import Frame, LeanWS, ServerClosed
from .worker import Group, WorkerBase, leaves

if TYPE_CHECKING:
    from .hub import OwnHub
    from .session import Bench

GOAL_NOTICES_PER_S = 2000.0
GOAL_P99_MS = 1000.0
BATCH_MAX = 500
#: the notice kinds a hospital system publishes (carehub/messaging/kinds.py), with their values
KINDS: tuple[tuple[str, dict[str, str]], ...] = (
    ("report.ready", {"patient": "张三", "report": "血常规", "department": "检验科"}),
    ("medicine.ready", {"patient": "李四", "window": "门诊药房 3 号窗口", "guidance": "每日三次，每次一片，饭后服用"}),
    ("inpatient.admitted", {"patient": "王五", "ward": "心内科一病区", "bed": "12 床"}),
)
#: listeners' channel preferences, dealt round robin: Alipay first, WeChat first, SMS first
PREFERENCES = (["alipay", "wechat", "sms"], ["wechat", "sms"], ["sms", "wechat"])
#: recipients whose openid does not follow the account (WeChat 43004): their WeChat-only notices go dead
UNREACHABLE_EVERY = 100
SMS_ONLY_EVERY = 10


# ---- partner signatures (HMAC-SM3, the scheme of docs/open-api.md; written here, not imported) ----------------


def sm3_hex(data: bytes) -> str:
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize().hex()


def signed_headers(key_id: str, secret: str, method: str, path: str, body: bytes,
                   *, now: float | None = None, nonce: str | None = None) -> dict[str, str]:
    """The four ``X-CareHub-*`` headers of a partner request: HMAC-SM3 over method, path (with its
    query), timestamp, nonce and the hex SM3 of the body, one per line."""
    timestamp = str(int(time.time() if now is None else now))
    nonce = nonce or secrets.token_urlsafe(18)
    text = "\n".join([method.upper(), path, timestamp, nonce, sm3_hex(body)]).encode()
    mac = crypto_hmac.HMAC(secret.encode(), hashes.SM3())
    mac.update(text)
    return {"X-CareHub-Key": key_id, "X-CareHub-Timestamp": timestamp, "X-CareHub-Nonce": nonce,
            "X-CareHub-Signature": mac.finalize().hex(), "Content-Type": "application/json"}


# ---- the reconciliation (pure: tested in tests/bots/test_bench_notify.py) ----------------------------------------


def duplicates_by_key(keys: Sequence[str | None]) -> tuple[int, int]:
    """Provider messages beyond the first per idempotency key, and messages carrying no key."""
    counts = collections.Counter(k for k in keys if k)
    return sum(n - 1 for n in counts.values() if n > 1), sum(1 for k in keys if not k)


@dataclasses.dataclass
class Reconciliation:
    notices: int
    delivered: int
    dead_lettered: int
    lost: int
    not_final: int
    extra: int


FINAL_DELIVERED = ("sent", "in_app")
NOT_FINAL = ("sending", "retrying", "deferred")


def reconcile(accepted: int, before: dict[str, int], after: dict[str, int]) -> Reconciliation:
    """Counts by notice status after the run minus before it, against the distinct notices accepted.

    ``lost``: accepted notices that are neither delivered nor dead-lettered (still on the way, or
    missing); ``extra``: notices more than were accepted (a repeat that made a second notice).
    """
    delta = {status: after.get(status, 0) - before.get(status, 0) for status in set(after) | set(before)}
    delivered = sum(delta.get(s, 0) for s in FINAL_DELIVERED)
    dead = delta.get("dead", 0)
    not_final = sum(delta.get(s, 0) for s in NOT_FINAL)
    total = sum(delta.values())
    return Reconciliation(accepted, delivered, dead, max(accepted - delivered - dead, 0), not_final,
                          max(total - accepted, 0))


# ---- the simulators, one process each ---------------------------------------------------------------------------


def _sim_main(conn: multiprocessing.connection.Connection, which: str, hub_port: int) -> None:
    """A spawned simulator process: serve ``which`` until the coordinator closes the pipe."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)

    async def main() -> None:
        from carehub.bots import alipay_sim, sms_gateway, wechat_sim

        hub = f"http://127.0.0.1:{hub_port}"
        info: dict[str, str]
        async with trio.open_nursery() as nursery:
            if which == "wechat":
                url = await nursery.start(lambda task_status: wechat_sim.serve_wechat_sim(
                    callback_url=f"{hub}/api/v1/channels/wechat/events", task_status=task_status,
                    settings=wechat_sim.SimSettings(max_messages=2_000_000, daily_quota=100_000_000)))
                info = {"url": url, "CAREHUB_WECHAT_URL": url, "CAREHUB_WECHAT_APPID": wechat_sim.DEFAULT_APPID,
                        "CAREHUB_WECHAT_SECRET": wechat_sim.DEFAULT_SECRET,
                        "CAREHUB_WECHAT_TEMPLATE_ID": wechat_sim.DEFAULT_TEMPLATE_ID,
                        "CAREHUB_WECHAT_EVENT_TOKEN": wechat_sim.DEFAULT_CALLBACK_TOKEN}
            elif which == "sms":
                settings = sms_gateway.GatewaySettings(
                    max_messages=2_000_000, limits=sms_gateway.FlowLimits(notice_per_day=100_000))
                url = await nursery.start(lambda task_status: sms_gateway.serve_sms_gateway(
                    receipt_url=f"{hub}/api/v1/channels/sms/reports", settings=settings, task_status=task_status))
                info = {"url": url, "CAREHUB_SMS_URL": url,
                        "CAREHUB_SMS_ACCESS_KEY_ID": sms_gateway.DEFAULT_ACCESS_KEY_ID,
                        "CAREHUB_SMS_ACCESS_KEY_SECRET": sms_gateway.DEFAULT_ACCESS_KEY_SECRET}
            else:
                handle = await nursery.start(lambda task_status: alipay_sim.serve_alipay_sim(
                    settings=alipay_sim.SimSettings(max_messages=2_000_000), task_status=task_status))
                info = {"url": handle.base_url, "CAREHUB_ALIPAY_URL": handle.gateway_url,
                        "CAREHUB_ALIPAY_APP_ID": handle.app_id,
                        "CAREHUB_ALIPAY_APP_PRIVATE_KEY_PEM": handle.app_private_key_pem,
                        "CAREHUB_ALIPAY_PUBLIC_KEY_PEM": handle.alipay_public_key_pem,
                        "CAREHUB_ALIPAY_TEMPLATE_ID": handle.template_id}
            conn.send(info)
            with contextlib.suppress(EOFError, OSError):
                await trio.to_thread.run_sync(conn.recv, abandon_on_cancel=True)
            nursery.cancel_scope.cancel()

    trio.run(main)


class Simulators:
    """The three providers' simulators, each in a process of its own, outliving any hub restart."""

    NAMES = ("wechat", "sms", "alipay")

    def __init__(self, hub_port: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.hub_port = hub_port
        self.procs: list[multiprocessing.process.BaseProcess] = []
        self.conns: list[multiprocessing.connection.Connection] = []
        self.urls: dict[str, str] = {}
        self.env: dict[str, str] = {}
        for name in self.NAMES:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_sim_main, args=(child, name, hub_port), daemon=True)
            proc.start()
            child.close()
            self.procs.append(proc)
            self.conns.append(parent)
        for name, conn in zip(self.NAMES, self.conns, strict=True):
            if not conn.poll(120):
                raise RuntimeError(f"the {name} simulator did not start")
            info: dict[str, str] = conn.recv()
            self.urls[name] = info.pop("url")
            self.env.update(info)
        note("simulators: " + ", ".join(f"{n} {u}" for n, u in self.urls.items()))

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def configure(self, fail_rate: float) -> None:
        with httpx.Client(timeout=30) as http:
            for name, url in self.urls.items():
                answer = http.post(f"{url}/_sim/config", json={"fail_rate": fail_rate})
                if answer.status_code != 200:
                    raise RuntimeError(f"{name} simulator: /_sim/config {answer.status_code} {answer.text[:200]}")

    def sent_keys(self) -> dict[str, list[str | None]]:
        """Per channel, the idempotency key of every message the provider recorded as sent."""
        field = {"wechat": "client_msg_id", "sms": "out_id", "alipay": "out_biz_no"}
        out: dict[str, list[str | None]] = {}
        with httpx.Client(timeout=300) as http:
            for name, url in self.urls.items():
                answer = http.get(f"{url}/_sim/messages", params={"limit": 10_000_000})
                answer.raise_for_status()
                out[name] = [m.get(field[name]) for m in answer.json()["messages"]]
        return out

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.close()
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(2)


# ---- the listeners (client worker side) -------------------------------------------------------------------------


class Listener:
    __slots__ = ("device", "last_seq", "token")

    def __init__(self, token: str, device: str) -> None:
        self.token = token
        self.device = device
        self.last_seq: int | None = None


class NotifyCommands(WorkerBase):
    """A worker's side of ``notify``: recipients' phones that note when each notice arrives."""

    def __init__(self, conn: multiprocessing.connection.Connection, index: int, url: str, src: str | None) -> None:
        super().__init__(conn, index, url, src)
        self.nt_ids: list[str] = []
        self.nt_at = array.array("d")
        self.nt_seqs: dict[str, set[int]] = {}
        self.nt_connected = 0
        self.nt_drops = 0
        self.nt_reconnects = 0

    def _on_notice(self, listener: Listener, ws: LeanWS, frame: Frame, now: float) -> Frame | None:
        if frame.get("op") != "deliver":
            return None
        seq = frame.get("seq")
        if isinstance(seq, int):
            listener.last_seq = seq if listener.last_seq is None else max(listener.last_seq, seq)
        body = frame.get("body")
        if frame.get("type") == "notice" and isinstance(body, dict) and isinstance(body.get("notice_id"), str):
            notice = body["notice_id"]
            seqs = self.nt_seqs.setdefault(notice, set())
            if not seqs:
                self.nt_ids.append(notice)
                self.nt_at.append(now)
            if isinstance(seq, int):
                seqs.add(seq)
        ws.acks += 1
        if ws.acks % 20 == 0 and isinstance(seq, int):
            return {"op": "ack", "seq": seq}
        return None

    async def _nt_connect(self, listener: Listener) -> LeanWS:
        with trio.fail_after(30):
            ws = await LeanWS.open(self.host, self.port, self.src)
            try:
                auth: Frame = {"op": "auth", "token": listener.token, "device": listener.device}
                if listener.last_seq is not None:
                    auth["resume_after"] = listener.last_seq
                await ws.send(auth)
                welcome = await ws.expect("welcome")
            except BaseException:
                await trio.aclose_forcefully(ws.stream)
                raise
        stream = welcome.get("stream") or {}
        if listener.last_seq is None and isinstance(stream.get("last_seq"), int):
            listener.last_seq = stream["last_seq"]
        return ws

    async def _nt_live(self, grp: Group, listener: Listener, ws: LeanWS) -> None:
        """Hold the connection; after a drop come back with ``resume_after`` (full-jitter back-off)."""
        while True:
            ws.handler = lambda w, f, t: self._on_notice(listener, w, f, t)
            grp.conns.append(ws)
            try:
                await ws.run()
            except (ServerClosed, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            finally:
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(ws.stream)
                grp.conns.remove(ws)
            self.nt_connected -= 1
            self.nt_drops += 1
            attempt = 0
            while True:
                attempt += 1
                await trio.sleep(random.uniform(0.5, min(8.0, 0.5 * 2 ** attempt)))
                try:
                    ws = await self._nt_connect(listener)
                    break
                except Exception:  # refused while the hub is down, closed, no welcome: try again
                    continue
            self.nt_connected += 1
            self.nt_reconnects += 1

    async def cmd_notify_listen(self, specs: list[tuple[str, str]], concurrency: int = 50) -> dict[str, Any]:
        grp = await self._group("notify")
        limiter = trio.CapacityLimiter(concurrency)
        errors: collections.Counter[str] = collections.Counter()

        async def one(token: str, device: str) -> None:
            listener = Listener(token, device)
            async with limiter:
                try:
                    ws = await self._nt_connect(listener)
                except Exception as err:
                    errors["; ".join(f"{type(e).__name__}: {str(e)[:60]}" for e in leaves(err))] += 1
                    return
            self.nt_connected += 1
            assert grp.nursery is not None
            grp.nursery.start_soon(self._nt_live, grp, listener, ws)

        async with trio.open_nursery() as nursery:
            for token, device in specs:
                nursery.start_soon(one, token, device)
        return {"ok": self.nt_connected, "errors": dict(errors.most_common(5))}

    async def cmd_notify_count(self) -> dict[str, Any]:
        return {"received": len(self.nt_ids), "connected": self.nt_connected}

    async def cmd_notify_collect(self) -> dict[str, Any]:
        repeats = sum(1 for seqs in self.nt_seqs.values() if len(seqs) > 1)
        return {"ids": self.nt_ids, "at": array_bytes(self.nt_at), "repeats": repeats, "drops": self.nt_drops,
                "reconnects": self.nt_reconnects, "connected": self.nt_connected}


# ---- the coordinator --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Batch:
    number: int
    items: list[dict[str, Any]]
    #: monotonic time of the first request carrying it (the notices' "event" time)
    first_sent: float = 0.0
    answered: float = 0.0
    attempts: int = 0
    results: list[dict[str, Any]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Partner:
    account_id: str
    key_id: str
    secret: str


@dataclasses.dataclass
class Recipient:
    account_id: str
    login: str


class NotifyRun:
    def __init__(self, bench: Bench, sims: Simulators) -> None:
        self.bench = bench
        self.sims = sims
        self.args = bench.args
        self.url = bench.url
        self.password = bench.accounts.password
        self.sources = 0

    # -- set-up through the admin API

    def _source(self) -> str:
        group = self.sources // LOGINS_PER_ADDRESS
        self.sources += 1
        return f"127.{self.bench.net}.{200 + group // 250}.{2 + group % 250}"

    def partner(self) -> Partner:
        b = self.bench
        login = f"bench-{b.run}-partner-0"
        made = b.call("POST", "/api/v1/admin/accounts", 201, json={"accounts": [
            {"login": login, "display_name": "压测 检验系统", "roles": ["partner"], "password": self.password}]})
        account_id = made["ids"][0]
        key = b.call("POST", f"/api/v1/admin/partners/{account_id}/keys", 201,
                     json={"operations": ["messages.publish"]})
        b.call("PUT", f"/api/v1/admin/publish-rules/{account_id}", 200,
               json={"kinds": ["*"], "audiences": ["patient", "staff"], "per_minute": 100_000})
        return Partner(account_id, key["key_id"], key["secret"])

    def recipients(self, n: int, listeners: int) -> list[Recipient]:
        b = self.bench
        started = time.monotonic()
        out: list[Recipient] = []
        base = b.run_base % 10**7
        for first in range(0, n, 1000):
            rows = []
            for i in range(first, min(first + 1000, n)):
                row: dict[str, Any] = {"login": f"bench-{b.run}-rcpt-{i}", "display_name": f"压测患者{i}",
                                       "roles": ["patient"], "phone": f"1{37 + (i % 3)}{(base + i) % 10**8:08d}"}
                if i < listeners:
                    row["password"] = self.password
                rows.append(row)
            made = b.call("POST", "/api/v1/admin/accounts", 201, json={"accounts": rows})
            out += [Recipient(a, r["login"]) for a, r in zip(made["ids"], rows, strict=True)]
        note(f"notify: {n} recipients made in {time.monotonic() - started:.1f} s ({listeners} with a password)")
        started = time.monotonic()
        for first in range(0, n, 1000):
            items = []
            for i in range(first, min(first + 1000, n)):
                follows = i % UNREACHABLE_EVERY != UNREACHABLE_EVERY - 1
                openid = ("o" if follows else "x") + f"bench{b.run}{i:07d}"
                alipay = f"2088{b.run_base % 10**4:04d}{i:08d}"
                items.append({"account_id": out[i].account_id, "wechat": openid, "alipay": alipay})
            b.call("POST", "/api/v1/admin/channel-bindings", 200, json={"items": items})
        note(f"notify: WeChat and Alipay bound in {time.monotonic() - started:.1f} s")
        return out

    async def sign_in_listeners(self, people: list[Recipient]) -> list[str]:
        tokens: list[str] = [""] * len(people)
        limit = trio.CapacityLimiter(8)
        async with httpx.AsyncClient(base_url=self.url, timeout=60) as http:

            async def one(i: int, person: Recipient) -> None:
                async with limit:
                    token, _ = await sign_in(self.url, person.login, self.password, src=self._source())
                prefs = PREFERENCES[i % len(PREFERENCES)]
                answer = await http.put("/api/v1/me/notice-preferences", json={"channels": prefs},
                                        headers={"Authorization": f"Bearer {token}"})
                if answer.status_code != 200:
                    raise RuntimeError(f"preferences of {person.login}: {answer.status_code} {answer.text[:200]}")
                tokens[i] = token

            async with trio.open_nursery() as nursery:
                for i, person in enumerate(people):
                    nursery.start_soon(one, i, person)
        return tokens

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = self.bench.call("GET", "/api/v1/admin/notice-channels")["notices"]
        return counts

    # -- the notices

    def plan(self, people: list[Recipient], n: int) -> list[Batch]:
        size = min(self.args.batch, BATCH_MAX)
        batches: list[Batch] = []
        items: list[dict[str, Any]] = []
        for i in range(n):
            r = i % len(people)
            kind, values = KINDS[i % len(KINDS)]
            item: dict[str, Any] = {"kind": kind, "to": {"account_id": people[r].account_id}, "values": values,
                                    "idempotency_key": f"bench-{self.bench.run}-{i}"}
            if self.args.in_app_only:
                item["channels"] = []
            elif r % UNREACHABLE_EVERY == UNREACHABLE_EVERY - 1:
                item["channels"] = ["wechat"]
            elif i % SMS_ONLY_EVERY == 0:
                item["channels"] = ["sms"]
            items.append(item)
            if len(items) == size:
                batches.append(Batch(len(batches), items))
                items = []
        if items:
            batches.append(Batch(len(batches), items))
        return batches

    async def publish(self, partner: Partner, batches: list[Batch], hub: OwnHub | None) -> dict[str, Any]:
        """Send every batch (``--publishers`` at a time) until each has an answer; with ``--kill``
        SIGKILL the hub at half way and start it again."""
        args = self.args
        queue = collections.deque(batches)
        accepted = 0
        refused: collections.Counter[str] = collections.Counter()
        failures: collections.Counter[str] = collections.Counter()
        kill_info: dict[str, Any] = {}
        killed = trio.Event() if args.kill else None
        half = len(batches) * args.batch // 2
        path = "/api/v1/open/messages/batch"
        limits = httpx.Limits(max_connections=args.publishers, max_keepalive_connections=args.publishers)
        async with httpx.AsyncClient(base_url=self.url, timeout=120, limits=limits) as http:

            async def kill_and_restart() -> None:
                assert hub is not None
                kill_info["at_accepted"] = accepted
                t0 = time.monotonic()
                kill_info["pid"] = hub.kill()
                note(f"notify: kill -9 of the hub (pid {kill_info['pid']}) after "
                     f"{accepted} notices accepted; starting it again")
                await trio.to_thread.run_sync(lambda: hub.start(port=hub.port))
                self.bench.hub_pid = hub.pid
                kill_info["down_s"] = round(time.monotonic() - t0, 2)
                note(f"notify: the hub is back after {kill_info['down_s']} s")

            async def publisher() -> None:
                nonlocal accepted
                while queue:
                    batch = queue.popleft()
                    body = orjson.dumps({"messages": batch.items})
                    while True:
                        batch.attempts += 1
                        now = time.monotonic()
                        if not batch.first_sent:
                            batch.first_sent = now
                        try:
                            answer = await http.post(path, content=body,
                                                     headers=signed_headers(partner.key_id, partner.secret,
                                                                            "POST", path, body))
                        except httpx.HTTPError as err:
                            failures[type(err).__name__] += 1
                            await trio.sleep(0.5)
                            continue
                        if answer.status_code == 202:
                            data = answer.json()
                            limited = [r for r in data["results"] if (r.get("error") or {}).get("code")
                                       == "rate_limited"]
                            if limited:
                                failures["rate_limited"] += 1
                                await trio.sleep(max(float(limited[0]["error"].get("retry_after") or 1), 0.2))
                                continue  # the same keys: the accepted ones answer their first answer
                            batch.results = data["results"]
                            batch.answered = time.monotonic()
                            for r in batch.results:
                                if r.get("message_id"):
                                    accepted += 1
                                else:
                                    refused[str((r.get("error") or {}).get("code"))] += 1
                            break
                        failures[f"http {answer.status_code}"] += 1
                        if answer.status_code in (429, 502, 503, 504) or answer.status_code >= 500:
                            await trio.sleep(float(answer.headers.get("Retry-After", "0.5")))
                            continue
                        raise RuntimeError(f"publish: {answer.status_code} {answer.text[:300]}")
                    if killed is not None and not killed.is_set() and accepted >= half:
                        killed.set()
                        nursery.start_soon(kill_and_restart)

            async with trio.open_nursery() as nursery:
                for _ in range(args.publishers):
                    nursery.start_soon(publisher)
        return {"accepted": accepted, "refused": dict(refused), "failures": dict(failures), "kill": kill_info}

    async def sample_status(self, partner: Partner, ids: list[str], n: int) -> dict[str, Any]:
        """``GET /api/v1/open/messages/<id>`` of ``n`` random accepted notices (signed): each must exist, final."""
        chosen = random.sample(ids, min(n, len(ids)))
        statuses: collections.Counter[str] = collections.Counter()
        missing = 0
        async with httpx.AsyncClient(base_url=self.url, timeout=60) as http:
            for message_id in chosen:
                path = f"/api/v1/open/messages/{message_id}"
                while True:  # the partner's key is rate-limited (50 requests/s): wait as told
                    answer = await http.get(path, headers=signed_headers(partner.key_id, partner.secret, "GET",
                                                                         path, b""))
                    if answer.status_code != 429:
                        break
                    await trio.sleep(float(answer.headers.get("Retry-After", "1")))
                if answer.status_code != 200:
                    missing += 1
                    continue
                statuses[answer.json()["status"]] += 1
        return {"sample_checked": len(chosen), "sample_missing": missing, "sample_statuses": dict(statuses)}

    def ops_token(self) -> str:
        token, _ = trio.run(lambda: sign_in(self.url, "ops", self.args.admin_password,
                                            totp_secret=self.args.admin_totp_secret or DEMO_TOTP_SECRET,
                                            src=self._source()))
        return token


def run(bench: Bench, sims: Simulators) -> None:
    args = bench.args
    hub = bench.hub
    if args.kill and hub is None:
        raise SystemExit("scripts/bench notify --kill needs its own hub (no --url)")
    n, m = args.notices, args.recipients
    listeners = min(args.listeners, m)
    job = NotifyRun(bench, sims)
    sims.configure(args.fail_rate)
    partner = job.partner()
    people = job.recipients(m, listeners)
    started = time.monotonic()
    tokens = trio.run(job.sign_in_listeners, people[:listeners])
    note(f"notify: {listeners} listeners signed in and chose their channels in {time.monotonic() - started:.1f} s")
    procs = args.procs or 2
    pool = bench.workers(procs)
    try:
        specs = [(token, f"bench-phone-{i}") for i, token in enumerate(tokens)]
        replies = pool.all("notify_listen", [{"specs": part} for part in split(specs, procs)], timeout=600)
        connected = sum(r["ok"] for r in replies)
        note(f"notify: {connected} listeners connected" + (f"; errors {[r['errors'] for r in replies]}"
                                                             if connected < listeners else ""))
        before = job.status_counts()
        batches = job.plan(people, n)
        size = len(batches[0].items)
        window = bench.cpu(pool)
        window.groups["sims"] = lambda: sims.pids
        window.start()
        note(f"notify: publishing {n} notices to {m} recipients in {len(batches)} batches, {args.publishers} in"
             f" flight, {args.fail_rate:.0%} of provider calls failing" + (", kill -9 half way" if args.kill else ""))
        published = trio.run(job.publish, partner, batches, hub)
        first = min(b.first_sent for b in batches)
        last = max(b.answered for b in batches)
        publish_cpu = window.stop()
        accepted_ids: dict[str, float] = {}
        owner: dict[str, int] = {}
        for b in batches:
            for k, r in enumerate(b.results):
                if r.get("message_id"):
                    accepted_ids.setdefault(r["message_id"], b.first_sent)
                    owner[r["message_id"]] = (b.number * size + k) % m
        rate = len(accepted_ids) / max(last - first, 1e-6)
        note(f"notify: {published['accepted']} accepted ({len(accepted_ids)} distinct) in {last - first:.1f} s:"
             f" {rate:.0f} notices/s; failures {published['failures']}, refused {published['refused']}")
        # settle: nothing on its way any more, every listener's notice on its phone
        expected_app = {i for i, r in owner.items() if r < listeners}
        deadline = time.monotonic() + args.settle_timeout
        settle_window = bench.cpu(pool)
        settle_window.groups["sims"] = lambda: sims.pids
        settle_window.start()
        counts = job.status_counts()
        received = 0
        while time.monotonic() < deadline:
            counts = job.status_counts()
            on_the_way = sum(counts.get(s, 0) for s in NOT_FINAL) - sum(before.get(s, 0) for s in NOT_FINAL)
            received = sum(c["received"] for c in pool.all("notify_count"))
            if on_the_way <= 0 and sum(counts.values()) - sum(before.values()) >= len(accepted_ids) \
                    and received >= len(expected_app):
                break
            time.sleep(1.0)
        settled_s = time.monotonic() - last
        settle_cpu = settle_window.stop()
        note(f"notify: settled {settled_s:.1f} s after the last answer: {counts}")
        rec = reconcile(len(accepted_ids), before, counts)
        collected = pool.all("notify_collect")
        latencies: list[float] = []
        seen_app: set[str] = set()
        for c in collected:
            at = array.array("d")
            at.frombytes(c["at"])
            for notice, t in zip(c["ids"], at, strict=True):
                seen_app.add(notice)
                sent = accepted_ids.get(notice)
                if sent is not None:
                    latencies.append((t - sent) * 1000.0)
        latencies.sort()
        app_missing = len(expected_app - seen_app)
        keys = sims.sent_keys()
        per_channel = {}
        duplicates = 0
        for channel, ks in keys.items():
            dup, keyless = duplicates_by_key(ks)
            duplicates += dup
            per_channel[channel] = {"messages": len(ks), "duplicates": dup, "without_key": keyless}
        ops = {"Authorization": f"Bearer {job.ops_token()}"}
        dead = bench.call("GET", "/api/v1/ops/notices/dead-letters", params={"limit": 500}, headers=ops)["items"]
        # the reason without the provider's request id, so equal reasons count together
        reasons = collections.Counter(re.sub(r"\s*(rid|RequestId)[: ]\s*\S+", "", str(d["reason"]))[:80]
                                      for d in dead)
        sample = trio.run(job.sample_status, partner, list(accepted_ids), args.sample)
        lat = latency_fields(latencies)
        result = bench.base("notify") | {
            "notices": len(accepted_ids),
            "delivered": rec.delivered,
            "dead_lettered": rec.dead_lettered,
            "lost": rec.lost,
            "duplicates": duplicates,
            "notices_per_s": round(rate, 1),
            "p99_ms": lat["p99_ms"],
            "p50_ms": lat["p50_ms"],
            "max_ms": lat["max_ms"],
            "asked": n,
            "recipients": m,
            "fail_rate": args.fail_rate,
            "kill": bool(args.kill),
            "kill_info": published["kill"],
            "publish_s": round(last - first, 2),
            "settled_s": round(settled_s, 1),
            "not_final": rec.not_final,
            "extra_notices": rec.extra,
            "status_counts": {k: v - before.get(k, 0) for k, v in counts.items()},
            "dead_without_reason": sum(1 for d in dead if not d.get("reason")),
            "dead_reasons": dict(reasons.most_common(5)),
            "refused": published["refused"],
            "publish_failures": published["failures"],
            "channels": per_channel,
            "listeners": connected,
            "app_expected": len(expected_app),
            "app_received": len(expected_app & seen_app),
            "app_missing": app_missing,
            "app_repeats": sum(c["repeats"] for c in collected),
            "app_samples": len(latencies),
            "listener_drops": sum(c["drops"] for c in collected),
            **sample,
            "goal_notices_per_s": GOAL_NOTICES_PER_S,
            "goal_p99_ms": GOAL_P99_MS,
            "goal_met": bool(rate >= GOAL_NOTICES_PER_S and lat["p99_ms"] is not None
                             and lat["p99_ms"] <= GOAL_P99_MS and rec.lost == 0 and duplicates == 0
                             and app_missing == 0),
            "publish_cpu": publish_cpu,
            "settle_cpu": settle_cpu,
            "sim_pids": sims.pids,
            "batch": args.batch,
            "publishers": args.publishers,
            "client_procs": procs,
        }
        emit(result)
        pool.all("close", group="notify")
    finally:
        bench.release(pool)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("notify (issue #18)")
    group.add_argument("--notices", type=int, default=50_000, help="notify: notices to publish (default 50000)")
    group.add_argument("--recipients", type=int, default=10_000, help="notify: recipients (default 10000)")
    group.add_argument("--fail-rate", type=float, default=0.1,
                       help="notify: share of provider calls each simulator fails (default 0.1)")
    group.add_argument("--kill", action="store_true",
                       help="notify: kill -9 the hub when half the notices are accepted, start it again")
    group.add_argument("--listeners", type=int, default=1000,
                       help="notify: recipients holding a /ws connection, whose notices are timed (default 1000)")
    group.add_argument("--batch", type=int, default=BATCH_MAX, help="notify: notices per publish request (max 500)")
    group.add_argument("--publishers", type=int, default=4, help="notify: publish requests in flight (default 4)")
    group.add_argument("--settle-timeout", type=float, default=300.0,
                       help="notify: seconds to wait for every notice to be final (default 300)")
    group.add_argument("--in-app-only", action="store_true",
                       help="notify: publish every notice with channels [] (no outside send): the publish path alone")
    group.add_argument("--sample", type=int, default=300,
                       help="notify: accepted notices read back one by one with GET /api/v1/open/messages/<id>")


__all__ = ["NotifyCommands", "Simulators", "add_arguments", "duplicates_by_key", "reconcile", "run",
           "signed_headers"]
