"""CareHub's benchmark: idle connections, topic fan-out, durable 1:1 messages, HTTP ask.

``./scripts/bench [idle|fanout|durable|ask] [--url http://HOST:PORT] [options]`` (docs/benchmarks.md).
Each result is ONE JSON line on stdout; progress, the rate curves and warnings go to stderr.

Like every bot, this talks to CareHub only over its public protocols (HTTP and ``/ws``); sign-in
reuses :func:`carehub.bots.client.login`. The bulk connections use :class:`LeanWS`, a minimal
RFC 6455 client (JSON subprotocol) instead of trio-websocket: one task and a few small objects per
connection (20,000 of them per run), set-up that fails loudly, and a little less CPU per frame
(about 24 µs against 29 µs received, most of it trio's wake-up per socket read). The client work
runs in separate OS processes (``--procs``), each with its own trio loop; the coordinator (this
process) only sends them commands and reads the hub's ``/metrics``. CPU seconds of every client
process, of the hub, of PostgreSQL and of everything else on the machine are read from ``/proc``
over each measurement window and reported with the result, so one can see which was saturated.
"""

from __future__ import annotations

import argparse
import array
import base64
import collections
import contextlib
import dataclasses
import functools
import hashlib
import hmac
import itertools
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import random
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import trio

from carehub.bots.client import CallFailed

SUBPROTOCOL = "carehub.v1.json"
MAX_CALLS_IN_FLIGHT = 16  # the gateway's per-connection limit (docs/protocol.md)
DEFAULT_IDLE_CONNS = (1000, 5000, 10000, 20000)
DEFAULT_FANOUT_SUBS = (100, 1000, 5000)
DEFAULT_FANOUT_STEPS = (2000, 5000, 10000, 15000, 20000, 30000, 40000, 60000)
DEFAULT_DURABLE_STEPS = (250, 500, 750, 1000, 1500, 2000, 2500, 3000, 4000, 5000)
GOAL_IDLE_KB = 30.0
GOAL_FANOUT_PER_S = 20000.0
GOAL_DURABLE_PER_S = 3000.0
GOAL_P99_MS = 100.0
CHAT_TEXT = "医生您好，今天早上血压 128/82，心率 72 次/分，药都按时吃了，下周还需要来复诊吗？"

Frame = dict[str, Any]
Handler = Callable[["LeanWS", Frame, float], "Frame | None"]


def note(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def emit(result: dict[str, Any]) -> None:
    """One result: one JSON line on stdout."""
    print(json.dumps(result, ensure_ascii=False), flush=True)


def raise_nofile_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return int(soft)


# ---- statistics ----------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence (``q`` in 0..100)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def merge_samples(blobs: Sequence[bytes]) -> list[float]:
    values: list[float] = []
    for blob in blobs:
        arr = array.array("d")
        arr.frombytes(blob)
        values.extend(arr)
    values.sort()
    return values


def latency_fields(ordered: Sequence[float], prefix: str = "") -> dict[str, float | None]:
    return {
        f"{prefix}p50_ms": rounded(percentile(ordered, 50)),
        f"{prefix}p99_ms": rounded(percentile(ordered, 99)),
        f"{prefix}max_ms": rounded(ordered[-1] if ordered else None),
    }


# ---- CPU accounting from /proc --------------------------------------------------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` so far."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _proc_comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def postgres_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and _proc_comm(int(p)) == "postgres"]


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    total = sum(parts[:8])
    return total - idle, total


class CpuWindow:
    """CPU use of named process groups over a time window, in % of one core."""

    def __init__(self, groups: dict[str, Callable[[], Sequence[int]]]) -> None:
        self.groups = groups
        self._start: dict[str, dict[int, float]] = {}
        self._t0 = 0.0
        self._machine0 = (0, 0)

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._machine0 = _machine_ticks()
        self._start = {name: self._sample(pids()) for name, pids in self.groups.items()}

    @staticmethod
    def _sample(pids: Sequence[int]) -> dict[int, float]:
        out = {}
        for pid in pids:
            cpu = _proc_cpu(pid)
            if cpu is not None:
                out[pid] = cpu
        return out

    def stop(self) -> dict[str, float | None]:
        wall = max(time.monotonic() - self._t0, 1e-6)
        busy1, total1 = _machine_ticks()
        result: dict[str, float | None] = {}
        for name, pids in self.groups.items():
            before = self._start.get(name, {})
            now = self._sample(pids())
            if not now and not before:
                result[f"{name}_cpu_pct"] = None
                continue
            used = {pid: cpu - before.get(pid, 0.0) for pid, cpu in now.items()}
            result[f"{name}_cpu_pct"] = round(sum(used.values()) / wall * 100, 1)
            if name == "client":
                result["client_cpu_max_proc_pct"] = round(max(used.values(), default=0.0) / wall * 100, 1)
        busy0, total0 = self._machine0
        busy = (busy1 - busy0) / max(total1 - total0, 1)
        result["machine_busy_pct"] = round(busy * 100, 1)
        # CPU used by everything else on the machine (other programs), in % of one core
        ours = sum(v for k, v in result.items() if k.endswith("_cpu_pct") and v is not None)
        result["other_cpu_pct"] = round(max(busy * (os.cpu_count() or 1) * 100 - ours, 0.0), 1)
        return result


# ---- the hub: started here, or found at --url -----------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listener_pid(port: int) -> int | None:
    """The pid of the local process listening on TCP ``port`` (readable /proc only)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(cols[9])
        except OSError:
            continue
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                        return int(pid)
        except OSError:
            continue
    return None


def fd_headroom(pid: int) -> int | None:
    """How many more file descriptors ``pid`` may open (its soft RLIMIT_NOFILE minus open ones)."""
    try:
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    soft = line.split()[3]
                    break
            else:
                return None
        if soft == "unlimited":
            return None
        return int(soft) - len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def _raise_limit_in_child() -> None:
    raise_nofile_limit()


class OwnHub:
    """``carehub serve`` in a subprocess of its own session (Ctrl-C here stops it cleanly)."""

    def __init__(self, *, keep_data: bool = False) -> None:
        self.keep_data = keep_data
        self.tmp = Path(tempfile.mkdtemp(prefix="carehub-bench-"))
        self.tmp.chmod(0o755)  # the embedded PostgreSQL may run as another user
        self.log_path = self.tmp / "hub.log"
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.sms_sim_url: str | None = None  # the demo hub's SMS gateway simulator (patients' sign-in codes)

    def start(self, timeout: float = 180.0) -> str:
        port = free_port()
        env = dict(os.environ)
        env.setdefault("CAREHUB_LOG_LEVEL", "WARNING")
        data_dir = self.tmp / "data"
        url = env.get("CAREHUB_DATABASE_URL")
        if url and not (env.get("CAREHUB_KEYS") or env.get("CAREHUB_KEY_FILE")):
            # the data folder holds the field-encryption key file: keep one per database, or the
            # next run could not read what this one sealed (the staff TOTP secrets, for one)
            cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
            data_dir = cache / "carehub-bench" / hashlib.sha256(url.encode()).hexdigest()[:16]
            data_dir.mkdir(parents=True, exist_ok=True)
            note(f"hub data folder (key file) for this database: {data_dir}")
        cmd = [sys.executable, "-m", "carehub", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--data-dir", str(data_dir)]
        where = "PostgreSQL at CAREHUB_DATABASE_URL" if env.get("CAREHUB_DATABASE_URL") else "embedded PostgreSQL"
        note(f"starting a hub on port {port} with the {where} (log: {self.log_path})")
        log = open(self.log_path, "w")  # the child keeps writing to it
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True, env=env,
            start_new_session=True, preexec_fn=_raise_limit_in_child,
        )
        log.close()
        found: list[str] = []
        assert self.proc.stdout is not None
        stdout = self.proc.stdout

        def read_stdout() -> None:
            for line in stdout:
                sms = re.search(r"SMS gateway simulator: (http://\S+)", line)
                if sms:
                    self.sms_sim_url = sms.group(1)
                if not found:
                    match = re.search(r"CareHub listening on (http://\S+)", line)
                    if match:
                        found.append(match.group(1))

        threading.Thread(target=read_stdout, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not found:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the hub exited during start-up (code {self.proc.returncode}):\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the hub did not start within {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.1)
        self.url = found[0]
        with httpx.Client(timeout=5) as http:
            while http.get(self.url + "/readyz").status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError("the hub never became ready")
                time.sleep(0.2)
        note(f"hub ready at {self.url}, pid {self.proc.pid}")
        return self.url

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def log_tail(self, limit: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            note("stopping the hub")
            proc.send_signal(signal.SIGTERM)  # drains clients, stops the embedded PostgreSQL
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                note("the hub did not stop in 40 s; killing its process group")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self.keep_data:
            note(f"hub data and log kept in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


class Metrics:
    """The hub's ``/metrics`` over one kept-alive HTTP connection."""

    def __init__(self, url: str, hub_pid: int | None) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)
        self.hub_pid = hub_pid

    def read(self) -> dict[str, float]:
        text = self.http.get("/metrics").text
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[name] = float(value)
        return out

    def rss_and_connections(self) -> tuple[float, float]:
        m = self.read()
        return m["process_resident_memory_bytes"], m.get("carehub_connections", float("nan"))

    def close(self) -> None:
        self.http.close()


# ---- accounts -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Account:
    id: str
    login: str
    token: str


#: The demo hospital's staff TOTP secret (carehub/demo.py): staff sign in with password + TOTP.
DEMO_TOTP_SECRET = "CAREHUBDEMOSTAFFTOTPSECRET234567"
#: Bench accounts signing in per source address (the hub limits sign-ins per client address).
LOGINS_PER_ADDRESS = 20


def totp_code(secret_b32: str, at: float | None = None, step: int = 30) -> str:
    """The RFC 6238 code (6 digits, SHA-1) of ``secret_b32`` at time ``at``."""
    secret = base64.b32decode(secret_b32.upper() + "=" * (-len(secret_b32) % 8))
    counter = int((time.time() if at is None else at) // step)
    digest = hmac.new(secret, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = int.from_bytes(digest[offset : offset + 4], "big") & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


async def sign_in(url: str, login_name: str, password: str, *, totp_secret: str | None = None,
                  totp_first: bool = False, src: str | None = None, attempts: int = 6) -> tuple[str, dict[str, Any]]:
    """POST /api/v1/auth/login (from source address ``src``); waits out 429s; adds a TOTP code when asked."""
    transport = httpx.AsyncHTTPTransport(local_address=src) if src else None
    body: dict[str, Any] = {"login": login_name, "password": password}
    if totp_first and totp_secret is not None:
        body["totp"] = totp_code(totp_secret)
    async with httpx.AsyncClient(base_url=url, timeout=60, transport=transport) as http:
        for _attempt in range(attempts):
            response = await http.post("/api/v1/auth/login", json=body)
            if response.status_code == 200:
                data = response.json()
                return data["token"], data["account"]
            if response.status_code == 429:
                await trio.sleep(float(response.headers.get("Retry-After", "5")) + random.random())
                continue
            if response.status_code == 401 and totp_secret is not None:
                if "totp" in body:  # a code is accepted once: wait for the next time step
                    await trio.sleep(30 - time.time() % 30 + 0.5)
                body["totp"] = totp_code(totp_secret)
                continue
            break
    raise CallFailed("auth_failed", f"signing in {login_name!r} failed: {response.status_code} {response.text[:200]}")


class Accounts:
    """Bench accounts ``bench-<run>-<role>-<i>``, created through the admin API and signed in once each.

    The login names the whole role: ``partner``, ``patient`` and ``pharmacist`` share an initial.

    Patients for idle connections and topic subscribers. Conversations (durable, ask) use doctors:
    a patient may post only after real-name verification (face check or ID photo review), which a
    load test cannot do; staff sign in with password + TOTP, whose secret account creation returns.
    """

    def __init__(self, url: str, admin_login: str, admin_password: str, run: str, *, reuse: bool = False,
                 admin_totp_secret: str | None = None, login_net: int = 0) -> None:
        self.url = url
        self.admin_login = admin_login
        self.admin_password = admin_password
        self.admin_totp_secret = admin_totp_secret
        self.run = run
        self.login_net = login_net
        # with --run-id, a later run signs in to the accounts an earlier one created
        self.reuse = reuse
        seed = f"{run}:{admin_password}" if reuse else uuid.uuid4().hex
        self.password = "Bench-" + hashlib.sha256(seed.encode()).hexdigest()[:20]
        self.pools: dict[str, list[Account]] = {}
        self.totp: dict[str, str] = {}  # login -> TOTP secret (staff)
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "carehub-bench"
        self._secrets_file = cache / f"totp-{hashlib.sha256((url + run).encode()).hexdigest()[:16]}.json"
        if reuse and self._secrets_file.exists():
            self.totp.update(json.loads(self._secrets_file.read_text()))
        self._admin: str | None = None
        self._sources = itertools.count()

    def admin_token(self) -> str:
        if self._admin is None:
            self._admin = trio.run(
                functools.partial(sign_in, self.url, self.admin_login, self.admin_password,
                                  totp_secret=self.admin_totp_secret, src=self._source())
            )[0]
        return self._admin

    def ensure(self, n: int, role: str = "patient") -> list[Account]:
        pool = self.pools.setdefault(role, [])
        if len(pool) < n:
            started = time.monotonic()
            first = len(pool)
            pool.extend(trio.run(self._provision, role, first, n, self.admin_token()))
            note(f"created and signed in {role} accounts {first}..{n - 1} in {time.monotonic() - started:.1f} s")
        return pool[:n]

    def _source(self) -> str | None:
        # each group of sign-ins comes from its own loopback address, like people on their own
        # phones, so the hub's per-address sign-in limit applies as it would in life
        if not self.login_net:
            return None
        group = next(self._sources) // LOGINS_PER_ADDRESS
        return f"127.{self.login_net}.{100 + group // 250}.{2 + group % 250}"

    async def _provision(self, role: str, first: int, last: int, admin: str) -> list[Account]:
        logins = [f"bench-{self.run}-{role}-{i}" for i in range(first, last)]
        ids: dict[str, str] = {}
        tokens: dict[str, str] = {}
        sign_in_limit = trio.CapacityLimiter(8)  # the hub checks each password (argon2, ~20 ms)

        async def one(name: str, missing_ok: bool = False) -> None:
            async with sign_in_limit:
                try:
                    token, account = await sign_in(self.url, name, self.password, src=self._source(),
                                                   totp_secret=self.totp.get(name), totp_first=name in self.totp)
                except CallFailed:
                    if missing_ok:
                        return
                    raise
                tokens[name] = token
                ids[name] = account["id"]

        if self.reuse:
            async with trio.open_nursery() as nursery:
                for name in logins:
                    nursery.start_soon(one, name, True)
        missing = [name for name in logins if name not in tokens]
        create_limit = trio.CapacityLimiter(4)  # the hub hashes each password (argon2, ~20 ms)

        async def create(chunk: list[str]) -> None:
            async with create_limit:
                body = {"accounts": [{"login": name, "display_name": f"压测 {name}", "roles": [role],
                                      "password": self.password} for name in chunk]}
                response = await http.post("/api/v1/admin/accounts", json=body)
                if response.status_code != 201:
                    raise RuntimeError(f"creating bench accounts failed: {response.status_code} {response.text}")
                data = response.json()
                ids.update(zip(chunk, data["ids"], strict=True))
                for name, uri in (data.get("totp_enrolment") or {}).items():
                    secret = urllib.parse.parse_qs(urllib.parse.urlsplit(uri).query).get("secret")
                    if secret:
                        self.totp[name] = secret[0]

        async with httpx.AsyncClient(base_url=self.url, timeout=300,
                                     headers={"Authorization": f"Bearer {admin}"}) as http:
            async with trio.open_nursery() as nursery:
                for k in range(0, len(missing), 50):
                    nursery.start_soon(create, missing[k : k + 50])
        if self.reuse and self.totp:
            self._secrets_file.parent.mkdir(parents=True, exist_ok=True)
            self._secrets_file.write_text(json.dumps(self.totp))
            self._secrets_file.chmod(0o600)
        async with trio.open_nursery() as nursery:
            for name in missing:
                nursery.start_soon(one, name)
        return [Account(ids[name], name, tokens[name]) for name in logins]


# ---- a lean WebSocket client (RFC 6455, client side) ------------------------------------------------


class ServerClosed(Exception):
    def __init__(self, code: int | None) -> None:
        super().__init__(f"closed by the server (code {code})")
        self.code = code


def _mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if not n:
        return payload
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")).to_bytes(n, "little")


def client_frame(payload: bytes, opcode: int = 1) -> bytes:
    """One unfragmented frame as a client sends it: masked with a fresh key (RFC 6455 5.3)."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    key = random.randbytes(4)
    return header + key + _mask(payload, key)


#: Linux's SO_TIMESTAMPNS (Python's socket module does not name it): each read also says when the
#: kernel received the bytes, so an answer's time is its arrival, not when this process, sharing the
#: CPUs with the hub, got round to reading it
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_STAMP_SPACE = socket.CMSG_SPACE(16)


def arrival(ancillary: list[tuple[int, int, bytes]]) -> float:
    """The monotonic time at which the kernel received what ``recvmsg`` read (now if it did not say)."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            return time.monotonic() - max(0.0, time.time() - (sec + nsec * 1e-9))
    return time.monotonic()


def _ignore(ws: LeanWS, frame: Frame, now: float) -> Frame | None:
    return None


class LeanWS:
    """One ``/ws`` connection: JSON text frames, app-level pings answered, frames handed to ``handler``."""

    __slots__ = ("_buf", "_frag", "_lock", "_queue", "acks", "bye", "close_code", "closed", "handler", "stream",
                 "tag")

    def __init__(self, stream: trio.SocketStream, rest: bytes) -> None:
        self.stream = stream
        stream.socket.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._buf = bytearray(rest)
        self._frag: bytearray | None = None
        self._lock = trio.Lock()
        self._queue: collections.deque[tuple[Frame, float]] = collections.deque()
        self.handler: Handler = _ignore
        self.close_code: int | None = None
        self.closed = False
        self.bye: Frame | None = None
        self.tag: Any = None
        self.acks = 0

    @classmethod
    async def open(cls, host: str, port: int, src: str | None) -> LeanWS:
        stream = await trio.open_tcp_stream(host, port, local_address=src)
        try:
            key = base64.b64encode(random.randbytes(16)).decode()
            request = (
                f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n"
            )
            await stream.send_all(request.encode())
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(16384)
                if not chunk:
                    raise ConnectionError("connection closed during the WebSocket handshake")
                data += chunk
                if len(data) > 65536:
                    raise ConnectionError("oversized handshake response")
            head, _, rest = data.partition(b"\r\n\r\n")
            status = head.split(b"\r\n", 1)[0]
            if b" 101" not in status:
                raise ConnectionError(f"handshake refused: {status.decode(errors='replace')}")
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return cls(stream, rest)

    async def send(self, frame: Frame) -> None:
        await self._send_frame(1, orjson.dumps(frame))

    async def _send_frame(self, opcode: int, payload: bytes) -> None:
        await self.send_raw(client_frame(payload, opcode))

    def send_now(self, data: bytes) -> bytes:
        """Write whole frames (from :func:`client_frame`) without a checkpoint, as far as the socket takes them now;
        returns what is left for :meth:`send_raw` (all of it while another send is in progress)."""
        if self._lock.locked():
            return data
        try:
            return data[os.write(self.stream.socket.fileno(), data):]
        except BlockingIOError:
            return data

    async def send_raw(self, data: bytes) -> None:
        """Bytes of whole frames, built with :func:`client_frame`."""
        async with self._lock:
            await self.stream.send_all(data)

    async def _pump(self) -> None:
        """Read once from the socket; queue every complete message (control frames handled here), each with the
        time the kernel received it."""
        data, ancillary, _flags, _address = await self.stream.socket.recvmsg(65536, _STAMP_SPACE)
        now = arrival(ancillary)
        if not data:
            self.closed = True
            raise ServerClosed(self.close_code)
        buf = self._buf
        buf += data
        pos, n = 0, len(buf)
        pings: list[bytes] = []
        close = False
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, start = b1 & 0x7F, pos + 2
            if length == 126:
                if n - pos < 4:
                    break
                length, start = (buf[pos + 2] << 8) | buf[pos + 3], pos + 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, start = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
            if b1 & 0x80:
                raise ConnectionError("the server sent a masked frame")
            end = start + length
            if end > n:
                break
            pos = end
            opcode = b0 & 0x0F
            if opcode in (1, 2):
                if b0 & 0x80:
                    self._queue.append((orjson.loads(buf[start:end]), now))
                else:
                    self._frag = bytearray(buf[start:end])
            elif opcode == 0 and self._frag is not None:
                self._frag += buf[start:end]
                if b0 & 0x80:
                    self._queue.append((orjson.loads(self._frag), now))
                    self._frag = None
            elif opcode == 8:
                self.close_code = (buf[start] << 8) | buf[start + 1] if length >= 2 else 1005
                close = True
                break
            elif opcode == 9:
                pings.append(bytes(buf[start:end]))
        del buf[:pos]
        for payload in pings:
            await self._send_frame(0xA, payload)
        if close:
            self.closed = True
            raise ServerClosed(self.close_code)

    async def expect(self, *ops: str) -> Frame:
        """Wait for a frame whose op is one of ``ops`` (set-up only; errors and bye raise)."""
        while True:
            while self._queue:
                frame, _ = self._queue.popleft()
                op = frame.get("op")
                if op in ops:
                    return frame
                if op == "ping":
                    await self.send({"op": "pong", "t": frame.get("t")})
                elif op in ("error", "bye"):
                    raise CallFailed(str(frame.get("code")), str(frame.get("message") or frame.get("reason")))
            await self._pump()

    async def run(self) -> None:
        """Hand every frame to ``handler`` until the connection ends (raises ServerClosed)."""
        queue = self._queue
        while True:
            while queue:
                frame, now = queue.popleft()
                op = frame.get("op")
                if op == "ping":
                    await self.send({"op": "pong", "t": frame.get("t")})
                    continue
                if op == "bye":
                    self.bye = frame
                out = self.handler(self, frame, now)
                if out is not None:
                    await self.send(out)
            await self._pump()

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            with trio.move_on_after(0.5), contextlib.suppress(Exception):
                await self._send_frame(8, struct.pack("!H", 1000))
        await trio.aclose_forcefully(self.stream)


async def open_session(host: str, port: int, src: str | None, token: str, device: str,
                       topic: str | None = None) -> LeanWS:
    """Connect, authenticate (and subscribe to ``topic``)."""
    ws = await LeanWS.open(host, port, src)
    try:
        await ws.send({"op": "auth", "token": token, "device": device})
        await ws.expect("welcome")
        if topic is not None:
            await ws.send({"op": "subscribe", "topic": topic})
            await ws.expect("subscribed")
    except BaseException:
        await trio.aclose_forcefully(ws.stream)
        raise
    return ws


class LeanHTTP:
    """One kept-alive HTTP/1.1 connection for JSON POSTs (httpx costs ~1 ms of client CPU a request)."""

    __slots__ = ("_buf", "closed", "host", "stream")

    def __init__(self, stream: trio.SocketStream, host: str) -> None:
        self.stream = stream
        self.host = host
        self._buf = bytearray()
        self.closed = False

    @classmethod
    async def open(cls, host: str, port: int, src: str | None) -> LeanHTTP:
        return cls(await trio.open_tcp_stream(host, port, local_address=src), f"{host}:{port}")

    async def _fill(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            self.closed = True
            raise ConnectionError("the server closed the connection")
        self._buf += data

    async def post(self, path: str, body: bytes, authorization: str | None) -> tuple[int, bytes]:
        return await self.request("POST", path, body, authorization)

    async def request(self, method: str, path: str, body: bytes | None = None,
                      authorization: str | None = None) -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
        if authorization:
            head += f"Authorization: {authorization}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        await self.stream.send_all(head.encode() + b"\r\n" + (body or b""))
        while (end := self._buf.find(b"\r\n\r\n")) < 0:
            await self._fill()
        lines = bytes(self._buf[:end]).decode("latin-1").split("\r\n")
        del self._buf[: end + 4]
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(self._buf) < n:
                await self._fill()
            payload = bytes(self._buf[:n])
            del self._buf[:n]
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = bytearray()
            while True:
                while (eol := self._buf.find(b"\r\n")) < 0:
                    await self._fill()
                size = int(bytes(self._buf[:eol]).split(b";")[0], 16)
                while len(self._buf) < eol + 2 + size + 2:
                    await self._fill()
                chunks += self._buf[eol + 2 : eol + 2 + size]
                del self._buf[: eol + 2 + size + 2]
                if size == 0:
                    break
            payload = bytes(chunks)
        else:
            raise ConnectionError("response without a length")
        if headers.get("connection", "").lower() == "close":
            self.closed = True
        return status, payload


# ---- client worker processes ----------------------------------------------------------------------


class Group:
    """Connections held open together in one worker."""

    def __init__(self) -> None:
        self.conns: list[LeanWS] = []
        self.nursery: trio.Nursery | None = None
        self.done = trio.Event()
        self.server_closed = 0
        self.close_codes: collections.Counter[int] = collections.Counter()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self.done.set()


@dataclasses.dataclass
class Pair:
    address: str
    sender: LeanWS
    receiver: LeanWS
    in_flight: int = 0


def _array_bytes(values: array.array[float]) -> bytes:
    return values.tobytes()


class Worker:
    """One client process: runs commands from the coordinator in its own trio loop."""

    def __init__(self, conn: multiprocessing.connection.Connection, index: int, url: str, src: str | None) -> None:
        self.conn = conn
        self.index = index
        parsed = httpx.URL(url)
        self.url = url
        self.host = parsed.host
        self.port = parsed.port or 80
        self.src = src
        self.groups: dict[str, Group] = {}
        self.nursery: trio.Nursery | None = None
        # fan-out receivers
        self.fan_step = -1
        self.fan_count = 0
        self.fan_lat = array.array("d")
        self.fan_first = math.inf
        self.fan_last = 0.0
        # durable pairs
        self.pairs: list[Pair] = []
        self.refs = itertools.count(1)
        self._reset_durable(-1)
        # publisher
        self.pub_replies = 0
        self.pub_subscribers = 0
        self.pub_errors: collections.Counter[str] = collections.Counter()

    async def main(self) -> None:
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            while True:
                try:
                    msg = await trio.to_thread.run_sync(self.conn.recv, abandon_on_cancel=True)
                except EOFError:
                    break
                if msg["cmd"] == "exit":
                    break
                try:
                    reply = await getattr(self, "cmd_" + msg["cmd"])(**msg.get("args", {}))
                except Exception as err:
                    reply = {"error": "; ".join(f"{type(e).__name__}: {e}" for e in _leaves(err))}
                self.conn.send(reply)
            nursery.cancel_scope.cancel()

    # -- connections

    async def _group(self, name: str) -> Group:
        group = self.groups.get(name)
        if group is None:
            assert self.nursery is not None
            group = self.groups[name] = Group()
            await self.nursery.start(group.run)
        return group

    async def _hold(self, group: Group, ws: LeanWS) -> None:
        try:
            await ws.run()
        except ServerClosed as err:
            group.server_closed += 1
            group.close_codes[err.code or 1006] += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            group.server_closed += 1
            group.close_codes[1006] += 1
        finally:
            with trio.CancelScope(shield=True):
                await ws.aclose()

    async def cmd_open(self, group: str, specs: list[tuple[str, str]], handler: str = "idle",
                       topic: str | None = None, concurrency: int = 100, timeout: float = 60.0) -> dict[str, Any]:
        """Open and authenticate one connection per ``(token, device)``; hold them in ``group``."""
        grp = await self._group(group)
        limiter = trio.CapacityLimiter(concurrency)
        errors: collections.Counter[str] = collections.Counter()
        ok = 0
        on_frame = {"idle": _ignore, "fanout": self._on_fanout}[handler]
        started = time.monotonic()

        async def one(token: str, device: str) -> None:
            nonlocal ok
            async with limiter:
                try:
                    with trio.fail_after(timeout):
                        ws = await open_session(self.host, self.port, self.src, token, device, topic)
                except Exception as err:
                    errors[f"{type(err).__name__}: {str(err)[:80]}"] += 1
                    return
            ws.handler = on_frame
            grp.conns.append(ws)
            assert grp.nursery is not None
            grp.nursery.start_soon(self._hold, grp, ws)
            ok += 1

        async with trio.open_nursery() as nursery:
            for token, device in specs:
                nursery.start_soon(one, token, device)
        return {"ok": ok, "failed": sum(errors.values()), "errors": dict(errors.most_common(5)),
                "seconds": time.monotonic() - started}

    async def cmd_status(self, group: str) -> dict[str, Any]:
        grp = self.groups.get(group)
        if grp is None:
            return {"open": 0, "server_closed": 0, "codes": {}}
        return {"open": sum(1 for ws in grp.conns if not ws.closed), "server_closed": grp.server_closed,
                "codes": dict(grp.close_codes)}

    async def cmd_close(self, group: str) -> dict[str, Any]:
        grp = self.groups.pop(group, None)
        if grp is None or grp.nursery is None:
            return {"closed": 0, "server_closed": 0}
        grp.nursery.cancel_scope.cancel()
        await grp.done.wait()
        if group == "durable":
            self.pairs = []
        return {"closed": len(grp.conns), "server_closed": grp.server_closed, "codes": dict(grp.close_codes)}

    # -- fan-out

    def _on_fanout(self, ws: LeanWS, frame: Frame, now: float) -> Frame | None:
        if frame.get("op") == "event":
            body = frame.get("body")
            if isinstance(body, dict) and body.get("step") == self.fan_step:
                self.fan_count += 1
                self.fan_lat.append((now - body["t"]) * 1000.0)
                if now < self.fan_first:
                    self.fan_first = now
                self.fan_last = now
        return None

    async def cmd_fan_reset(self, step: int) -> dict[str, Any]:
        self.fan_step = step
        self.fan_count = 0
        self.fan_lat = array.array("d")
        self.fan_first = math.inf
        self.fan_last = 0.0
        return {}

    async def cmd_fan_count(self) -> dict[str, Any]:
        return {"received": self.fan_count}

    async def cmd_fan_collect(self) -> dict[str, Any]:
        return {"received": self.fan_count, "lat": _array_bytes(self.fan_lat),
                "first": self.fan_first, "last": self.fan_last}

    def _on_publisher(self, ws: LeanWS, frame: Frame, now: float) -> Frame | None:
        if frame.get("op") == "reply":
            self.pub_replies += 1
            if frame.get("ok"):
                self.pub_subscribers += int(frame["result"]["subscribers"])
            else:
                self.pub_errors[str(frame.get("error", {}).get("code"))] += 1
        elif frame.get("op") == "error":
            self.pub_errors[str(frame.get("code"))] += 1
        return None

    async def cmd_publish(self, token: str, topic: str, step: int, rate: float, count: int,
                          critical: bool) -> dict[str, Any]:
        """Publish ``count`` events at ``rate``/s; each body carries its send time and sequence."""
        ws = await open_session(self.host, self.port, self.src, token, f"bench-publisher-{step}")
        self.pub_replies = self.pub_subscribers = 0
        self.pub_errors = collections.Counter()
        ws.handler = self._on_publisher
        lags = array.array("d")
        closed: list[int | None] = []

        async def read() -> None:
            try:
                await ws.run()
            except ServerClosed as err:
                closed.append(err.code)  # e.g. 4008: the hub found this connection's send buffer stuck
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                closed.append(1006)

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                t0 = time.monotonic() + 0.05
                first = 0.0
                for k in range(count):
                    due = t0 + k / rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        await trio.sleep(delay)
                    if closed:
                        break
                    now = time.monotonic()
                    lags.append((now - due) * 1000.0)
                    if k == 0:
                        first = now
                    frame: Frame = {"op": "publish", "id": k, "topic": topic, "type": "bench.tick",
                                    "body": {"seq": k, "t": now, "step": step}}
                    if critical:
                        frame["critical"] = True
                    try:
                        await ws.send(frame)
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        closed.append(1006)
                        break
                last_sent = time.monotonic()
                with trio.move_on_after(30):
                    while self.pub_replies < len(lags) and not closed:
                        await trio.sleep(0.01)
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await ws.aclose()
        ordered = sorted(lags)
        if closed:
            self.pub_errors[f"publisher connection closed by the hub (code {closed[0]})"] += 1
        return {"sent": len(lags), "replies": self.pub_replies, "subscribers_sum": self.pub_subscribers,
                "errors": dict(self.pub_errors), "first": first, "last_sent": last_sent,
                "lag_p99_ms": percentile(ordered, 99), "lag_max_ms": ordered[-1] if ordered else None}

    # -- durable 1:1 messages

    def _reset_durable(self, step: int) -> None:
        self.d_step = step
        self.d_sent: dict[int, tuple[float, int]] = {}
        self.d_acked: set[int] = set()
        self.d_delivered: set[int] = set()
        self.d_lat = array.array("d")
        self.d_reply_lat = array.array("d")
        self.d_lag = array.array("d")
        self.d_errors: collections.Counter[str] = collections.Counter()
        self.d_skipped = 0
        self.d_first_send = math.inf
        self.d_last_deliver = 0.0
        for pair in self.pairs:
            pair.in_flight = 0

    def _ack_every(self, ws: LeanWS, frame: Frame) -> Frame | None:
        ws.acks += 1
        if ws.acks % 50 == 0:
            return {"op": "ack", "seq": frame["seq"]}
        return None

    def _on_sender(self, ws: LeanWS, frame: Frame, now: float) -> Frame | None:
        op = frame.get("op")
        if op == "reply":
            ref = frame.get("id")
            entry = self.d_sent.get(ref)  # type: ignore[arg-type]
            if entry is None:
                return None
            sent_at, pair = entry
            self.pairs[pair].in_flight -= 1
            if frame.get("ok"):
                self.d_acked.add(ref)  # type: ignore[arg-type]
                self.d_reply_lat.append((now - sent_at) * 1000.0)
            else:
                self.d_errors[str(frame.get("error", {}).get("code"))] += 1
        elif op == "deliver":
            return self._ack_every(ws, frame)
        elif op == "error":
            self.d_errors[str(frame.get("code"))] += 1
        return None

    def _on_receiver(self, ws: LeanWS, frame: Frame, now: float) -> Frame | None:
        if frame.get("op") != "deliver":
            return None
        body = frame.get("body")
        ref_text = body.get("client_ref") if isinstance(body, dict) else None
        if isinstance(ref_text, str):
            step, _, ref_s = ref_text.partition(":")
            if step == str(self.d_step):
                ref = int(ref_s)
                entry = self.d_sent.get(ref)
                if entry is not None and ref not in self.d_delivered:
                    self.d_delivered.add(ref)
                    self.d_lat.append((now - entry[0]) * 1000.0)
                    self.d_last_deliver = max(self.d_last_deliver, now)
        return self._ack_every(ws, frame)

    async def cmd_durable_open(self, pairs: list[tuple[str, str, str]], concurrency: int = 50,
                               timeout: float = 60.0) -> dict[str, Any]:
        """Open a sender (account A) and a receiver (account B) connection per ``(token_a, token_b, address)``."""
        grp = await self._group("durable")
        limiter = trio.CapacityLimiter(concurrency)
        errors: collections.Counter[str] = collections.Counter()

        async def one(token_a: str, token_b: str, address: str) -> None:
            async with limiter:
                try:
                    with trio.fail_after(timeout):
                        sender = await open_session(self.host, self.port, self.src, token_a, "bench-sender")
                        receiver = await open_session(self.host, self.port, self.src, token_b, "bench-receiver")
                except Exception as err:
                    errors[f"{type(err).__name__}: {str(err)[:80]}"] += 1
                    return
            sender.handler = self._on_sender
            receiver.handler = self._on_receiver
            self.pairs.append(Pair(address, sender, receiver))
            assert grp.nursery is not None
            for ws in (sender, receiver):
                grp.conns.append(ws)
                grp.nursery.start_soon(self._hold, grp, ws)

        async with trio.open_nursery() as nursery:
            for spec in pairs:
                nursery.start_soon(one, *spec)
        return {"ok": len(self.pairs), "failed": sum(errors.values()), "errors": dict(errors.most_common(5))}

    async def _sender_loop(self, index: int, start: float, interval: float, end: float) -> None:
        pair = self.pairs[index]
        due = start + random.random() * interval
        step = self.d_step
        while due < end:
            delay = due - time.monotonic()
            if delay > 0:
                await trio.sleep(delay)
            if pair.sender.closed:
                return
            if pair.in_flight >= MAX_CALLS_IN_FLIGHT:
                self.d_skipped += 1
            else:
                ref = next(self.refs)
                pair.in_flight += 1
                now = time.monotonic()
                self.d_lag.append((now - due) * 1000.0)
                self.d_first_send = min(self.d_first_send, now)
                self.d_sent[ref] = (now, index)
                try:
                    await pair.sender.send({"op": "call", "id": ref, "to": pair.address, "type": "PostMessage",
                                            "body": {"text": CHAT_TEXT, "client_ref": f"{step}:{ref}"}})
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    return  # the hub closed this connection (counted as disconnected; its posts unanswered)
            due += interval

    async def cmd_durable_step(self, step: int, interval: float, duration: float, grace: float) -> dict[str, Any]:
        """Every pair posts one message per ``interval`` s for ``duration`` s; then wait for the stragglers."""
        self._reset_durable(step)
        start = time.monotonic() + 0.1
        async with trio.open_nursery() as nursery:
            for i in range(len(self.pairs)):
                nursery.start_soon(self._sender_loop, i, start, interval, start + duration)
        sent_done = time.monotonic()
        deadline = sent_done + grace
        while time.monotonic() < deadline:
            answered = len(self.d_acked) + sum(self.d_errors.values())
            if answered >= len(self.d_sent) and self.d_acked <= self.d_delivered:
                break
            await trio.sleep(0.02)
        lost = len(self.d_acked - self.d_delivered)
        unanswered = len(self.d_sent) - len(self.d_acked) - sum(self.d_errors.values())
        return {"sent": len(self.d_sent), "acked": len(self.d_acked), "delivered": len(self.d_delivered),
                "lost": lost, "unanswered": max(unanswered, 0), "errors": dict(self.d_errors),
                "skipped": self.d_skipped, "lat": _array_bytes(self.d_lat),
                "reply_lat": _array_bytes(self.d_reply_lat), "lag": _array_bytes(self.d_lag),
                "first": self.d_first_send, "last": self.d_last_deliver, "sent_done": sent_done}

    # -- HTTP ask

    async def cmd_ask(self, calls: list[tuple[str, str]], rate: float, duration: float, warmup: float,
                      conns: int = 32) -> dict[str, Any]:
        """POST /api/v1/call at a fixed rate (open loop) over ``conns`` kept-alive HTTP/1.1
        connections; ``calls`` are ``(token, actor address)``. A request waits for a free
        connection (that wait is reported as send lag, not as latency)."""
        lat = array.array("d")
        lags = array.array("d")
        errors: collections.Counter[str] = collections.Counter()
        free_send, free = trio.open_memory_channel[LeanHTTP | None](conns)
        for _ in range(conns):
            free_send.send_nowait(None)  # opened on first use
        opened: list[LeanHTTP] = []

        async def one(k: int, due: float, record: bool, http: LeanHTTP | None) -> None:
            token, to = calls[k % len(calls)]
            body = orjson.dumps({"to": to, "type": "GetConversation", "body": {}})
            started = time.monotonic()
            try:
                if http is None or http.closed:
                    http = await LeanHTTP.open(self.host, self.port, self.src)
                    opened.append(http)
                status, _ = await http.post("/api/v1/call", body, f"Bearer {token}")
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError) as err:
                errors[type(err).__name__] += 1
                http = None
            else:
                elapsed = (time.monotonic() - started) * 1000.0
                if status != 200:
                    errors[str(status)] += 1
                elif record:
                    lat.append(elapsed)
                    lags.append((started - due) * 1000.0)
            free_send.send_nowait(http)

        async def phase(seconds: float, record: bool) -> None:
            t0 = time.monotonic() + 0.05
            async with trio.open_nursery() as nursery:
                for k in range(int(rate * seconds)):
                    due = t0 + k / rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        await trio.sleep(delay)
                    http = await free.receive()
                    nursery.start_soon(one, k, due, record, http)

        try:
            await phase(warmup, False)
            started = time.monotonic()
            await phase(duration, True)
            elapsed = time.monotonic() - started
        finally:
            for http in opened:
                await trio.aclose_forcefully(http.stream)
        return {"lat": _array_bytes(lat), "lag": _array_bytes(lags), "errors": dict(errors), "seconds": elapsed}


def _leaves(err: BaseException) -> list[BaseException]:
    if isinstance(err, BaseExceptionGroup):
        return [leaf for sub in err.exceptions for leaf in _leaves(sub)]
    return [err]


def worker_main(conn: multiprocessing.connection.Connection, index: int, url: str, src: str | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator stops us
    raise_nofile_limit()
    trio.run(Worker(conn, index, url, src).main)


class Workers:
    """A pool of client processes (spawned: a clean interpreter each)."""

    _spawned = 0
    _net = random.randint(10, 250)  # 127.<net>.x.y: fresh source addresses for every run

    def __init__(self, n: int, url: str, *, spread_sources: bool = True,
                 target: Callable[..., None] = worker_main) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.procs: list[multiprocessing.process.BaseProcess] = []
        self.conns: list[multiprocessing.connection.Connection] = []
        for _ in range(n):
            j = Workers._spawned
            Workers._spawned += 1
            # each process its own loopback source address, so ephemeral ports never run short
            src = f"127.{Workers._net}.{1 + j // 250}.{2 + j % 250}" if spread_sources else None
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=target, args=(child, j, url, src), daemon=True)
            proc.start()
            child.close()
            self.procs.append(proc)
            self.conns.append(parent)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def __len__(self) -> int:
        return len(self.procs)

    def send(self, i: int, cmd: str, **args: Any) -> None:
        self.conns[i].send({"cmd": cmd, "args": args})

    def recv(self, i: int, timeout: float = 600.0) -> dict[str, Any]:
        if not self.conns[i].poll(timeout):
            raise RuntimeError(f"client worker {i} did not answer in {timeout:.0f} s")
        reply: dict[str, Any] = self.conns[i].recv()
        if "error" in reply:
            raise RuntimeError(f"client worker {i}: {reply['error']}")
        return reply

    def all(self, cmd: str, per_worker: Sequence[dict[str, Any]] | None = None, timeout: float = 600.0,
            **args: Any) -> list[dict[str, Any]]:
        for i in range(len(self)):
            self.send(i, cmd, **(per_worker[i] if per_worker is not None else args))
        return [self.recv(i, timeout) for i in range(len(self))]

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError, ValueError):
                conn.send({"cmd": "exit"})
        deadline = time.monotonic() + 10
        for proc in self.procs:
            proc.join(max(deadline - time.monotonic(), 0.1))
            if proc.is_alive():
                proc.terminate()
                proc.join(2)
        for conn in self.conns:
            conn.close()


# ---- the workloads --------------------------------------------------------------------------------


def split(items: Sequence[Any], n: int) -> list[list[Any]]:
    return [list(items[i::n]) for i in range(n)]


class Bench:
    def __init__(self, args: argparse.Namespace, url: str, hub_pid: int | None) -> None:
        self.args = args
        self.url = url.rstrip("/")
        self.hub_pid = hub_pid
        self.run = args.run_id or uuid.uuid4().hex[:6]
        self.metrics = Metrics(self.url, hub_pid)
        self.accounts = Accounts(self.url, args.admin_login, args.admin_password, self.run,
                                 reuse=bool(args.run_id), admin_totp_secret=args.admin_totp_secret or None,
                                 login_net=Workers._net)
        self.pools: list[Workers] = []

    def close(self) -> None:
        for pool in self.pools:
            pool.close()
        self.pools.clear()
        self.metrics.close()

    def workers(self, n: int) -> Workers:
        pool = Workers(n, self.url)
        self.pools.append(pool)
        return pool

    def release(self, pool: Workers) -> None:
        pool.close()
        self.pools.remove(pool)

    def cpu(self, *pools: Workers) -> CpuWindow:
        hub = self.hub_pid
        return CpuWindow({
            "client": lambda: [os.getpid(), *[pid for pool in pools for pid in pool.pids]],
            "hub": lambda: [hub] if hub is not None else [],
            "pg": postgres_pids,
        })

    def base(self, name: str) -> dict[str, Any]:
        return {"bench": name, "url": self.url}

    # -- (a) idle connections

    def idle(self, levels: Sequence[int]) -> None:
        args = self.args
        accounts = self.accounts.ensure(args.accounts)
        top = max(levels)
        procs = args.procs or max(2, math.ceil(top / 5000))
        pool = self.workers(procs)
        try:
            time.sleep(1.0)
            rss0, conns0 = self.metrics.rss_and_connections()
            note(f"idle: hub RSS before {rss0 / 2**20:.1f} MB, {conns0:.0f} connections; {procs} client processes")
            held = 0
            for level in sorted(levels):
                target = level
                limited = None
                if self.hub_pid is not None:
                    room = fd_headroom(self.hub_pid)
                    if room is not None and level - held > room - 64:
                        target = held + max(room - 64, 0)
                        limited = (f"the hub process may open only {room} more file descriptors "
                                   f"(RLIMIT_NOFILE); holding {target} of {level}")
                        note("idle: " + limited)
                specs = [(accounts[i % len(accounts)].token, f"idle-{self.run}-{i}") for i in range(held, target)]
                window = self.cpu(pool)
                window.start()
                started = time.monotonic()
                replies = pool.all("open", [
                    {"group": "idle", "specs": part, "handler": "idle", "concurrency": args.concurrency}
                    for part in split(specs, procs)
                ])
                open_seconds = time.monotonic() - started
                opening_cpu = window.stop()
                opened = sum(r["ok"] for r in replies)
                failed = sum(r["failed"] for r in replies)
                errors: collections.Counter[str] = collections.Counter()
                for r in replies:
                    errors.update(r["errors"])
                held += opened
                note(f"idle: {held} connections open ({open_seconds:.0f} s to open {opened}); holding {args.hold:g} s")
                window = self.cpu(pool)
                window.start()
                time.sleep(args.hold)
                hold_cpu = window.stop()
                statuses = pool.all("status", group="idle")
                still_open = sum(s["open"] for s in statuses)
                dropped = sum(s["server_closed"] for s in statuses)
                rss, conns = self.metrics.rss_and_connections()
                per_conn = (rss - rss0) / max(still_open, 1) / 1024
                result = self.base("idle") | {
                    "conns": level,
                    "held": still_open,
                    "rss_per_conn_kb": round(per_conn, 2),
                    "hub_rss_mb": round(rss / 2**20, 1),
                    "hub_rss_before_mb": round(rss0 / 2**20, 1),
                    "hub_connections": int(conns - conns0),
                    "failed": failed,
                    "dropped_by_server": dropped,
                    "open_per_s": round(opened / max(open_seconds, 1e-6), 1),
                    "hold_s": args.hold,
                    "accounts": len(accounts),
                    "client_procs": procs,
                    "client_cpu_pct_opening": opening_cpu["client_cpu_pct"],
                    "hub_cpu_pct_opening": opening_cpu["hub_cpu_pct"],
                    "client_cpu_pct": hold_cpu["client_cpu_pct"],
                    "hub_cpu_pct": hold_cpu["hub_cpu_pct"],
                    "other_cpu_pct": hold_cpu["other_cpu_pct"],
                    "goal_kb": GOAL_IDLE_KB,
                    "goal_met": (per_conn <= GOAL_IDLE_KB and still_open >= level) if level >= 20000 else None,
                }
                if errors:
                    result["errors"] = dict(errors.most_common(3))
                if limited:
                    result["limited_by"] = limited
                emit(result)
            pool.all("close", group="idle")
        finally:
            self.release(pool)

    # -- (b) topic fan-out

    def fanout(self, subs_levels: Sequence[int]) -> None:
        args = self.args
        accounts = self.accounts.ensure(args.accounts)
        admin = self.accounts.admin_token()
        for subs in subs_levels:
            procs = args.procs or 2
            receivers = self.workers(procs)
            publisher = self.workers(1)
            topic = f"broadcast/bench-{self.run}-{subs}"
            try:
                specs = [(accounts[i % len(accounts)].token, f"fan-{self.run}-{subs}-{i}") for i in range(subs)]
                replies = receivers.all("open", [
                    {"group": "fan", "specs": part, "handler": "fanout", "topic": topic,
                     "concurrency": args.concurrency} for part in split(specs, procs)
                ])
                subscribed = sum(r["ok"] for r in replies)
                if subscribed < subs:
                    note(f"fanout: only {subscribed} of {subs} subscribers connected: "
                         f"{[r['errors'] for r in replies]}")
                steps = []
                for step, target in enumerate(args.steps or DEFAULT_FANOUT_STEPS):
                    rate = target / max(subscribed, 1)  # events/s
                    note(f"fanout: {subscribed} subscribers, {target} deliveries/s offered ({rate:.2f} events/s)")
                    count = max(math.ceil(rate * args.step_seconds), 5)
                    receivers.all("fan_reset", step=step)
                    window = self.cpu(receivers, publisher)
                    window.start()
                    publisher.send(0, "publish", token=admin, topic=topic, step=step, rate=rate, count=count,
                                   critical=args.critical)
                    pub = publisher.recv(0, timeout=args.step_seconds * 10 + 120)
                    expected = subscribed * pub["sent"]
                    self._drain(receivers, expected)
                    cpu = window.stop()
                    collected = receivers.all("fan_collect")
                    received = sum(c["received"] for c in collected)
                    lat = merge_samples([c["lat"] for c in collected])
                    last = max(c["last"] for c in collected)
                    span = max(last - pub["first"], 1e-6)
                    status = receivers.all("status", group="fan")
                    row = {
                        "subs": subscribed,
                        "offered_deliveries_per_s": target,
                        "events_per_s": round(rate, 2),
                        "events": pub["sent"],
                        "deliveries_per_s": round(received / span, 1),
                        **latency_fields(lat),
                        "lost": expected - received,
                        "disconnected": sum(s["server_closed"] for s in status),
                        "publish_errors": pub["errors"],
                        "publisher_lag_p99_ms": rounded(pub["lag_p99_ms"]),
                        **cpu,
                    }
                    p99 = row["p99_ms"] if row["p99_ms"] is not None else math.inf
                    row["sustained"] = bool(row["lost"] == 0 and p99 < GOAL_P99_MS and not pub["errors"]
                                            and not row["disconnected"])
                    note("fanout step " + json.dumps(row, ensure_ascii=False))
                    steps.append(row)
                    # go on past the latency goal to find the capacity; stop once the hub is saturated
                    if (row["deliveries_per_s"] < 0.9 * target or row["lost"] > 0.01 * expected or p99 > 1000
                            or row["disconnected"] or pub["errors"]):
                        break
                good = [r for r in steps if r["sustained"]]
                best = max(good, key=lambda r: r["deliveries_per_s"]) if good else steps[0]
                top = max(steps, key=lambda r: r["deliveries_per_s"])
                result = self.base("fanout") | {
                    "subs": subs,
                    "deliveries_per_s": best["deliveries_per_s"],
                    "p50_ms": best["p50_ms"],
                    "p99_ms": best["p99_ms"],
                    "max_ms": best["max_ms"],
                    "lost": best["lost"],
                    "sustained": best["sustained"],
                    "offered_deliveries_per_s": best["offered_deliveries_per_s"],
                    "events_per_s": best["events_per_s"],
                    "events": best["events"],
                    "critical": args.critical,
                    "subscribed": subscribed,
                    "client_procs": procs + 1,
                    "client_cpu_pct": best["client_cpu_pct"],
                    "client_cpu_max_proc_pct": best["client_cpu_max_proc_pct"],
                    "hub_cpu_pct": best["hub_cpu_pct"],
                    "machine_busy_pct": best["machine_busy_pct"],
                    "max_deliveries_per_s": top["deliveries_per_s"],
                    "at_max": {k: top[k] for k in ("offered_deliveries_per_s", "p50_ms", "p99_ms", "lost",
                                                   "hub_cpu_pct", "client_cpu_pct")},
                    "curve": [[r["offered_deliveries_per_s"], r["deliveries_per_s"], r["p99_ms"], r["lost"]]
                              for r in steps],
                }
                if subs == 1000:
                    result["goal_met"] = bool(best["sustained"] and best["deliveries_per_s"] >= GOAL_FANOUT_PER_S)
                emit(result)
                receivers.all("close", group="fan")
            finally:
                self.release(publisher)
                self.release(receivers)

    def _drain(self, receivers: Workers, expected: int, quiet: float = 2.0, limit: float = 30.0) -> None:
        """Wait until ``expected`` deliveries arrived, or nothing more came for ``quiet`` s."""
        deadline = time.monotonic() + limit
        last_count, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            count = sum(r["received"] for r in receivers.all("fan_count"))
            if count >= expected:
                return
            if count != last_count:
                last_count, last_change = count, time.monotonic()
            elif time.monotonic() - last_change > quiet:
                return
            time.sleep(0.05)

    # -- (c) durable 1:1 messages

    def durable(self, pairs: int) -> None:
        args = self.args
        accounts = self.accounts.ensure(2 * pairs, "doctor")
        procs = args.procs or 2
        pool = self.workers(procs)
        try:
            specs = []
            for i in range(pairs):
                a, b = accounts[2 * i], accounts[2 * i + 1]
                specs.append((a.token, b.token, "conversation/" + "~".join(sorted([a.id, b.id]))))
            replies = pool.all("durable_open", [{"pairs": part} for part in split(specs, procs)])
            opened = sum(r["ok"] for r in replies)
            if opened < pairs:
                note(f"durable: only {opened} of {pairs} pairs connected: {[r['errors'] for r in replies]}")
            # warm-up: every conversation actor activated (state loaded) before measuring
            pool.all("durable_step", step=0, interval=2.0, duration=2.0, grace=10.0)
            steps = []
            for step, offered in enumerate(args.steps or DEFAULT_DURABLE_STEPS, start=1):
                interval = opened / offered  # seconds between one pair's messages
                note(f"durable: step {step}, {offered} msgs/s offered for {args.step_seconds:g} s")
                window = self.cpu(pool)
                window.start()
                results = pool.all("durable_step", step=step, interval=interval, duration=args.step_seconds,
                                   grace=10.0, timeout=args.step_seconds + 120)
                cpu = window.stop()
                lat = merge_samples([r["lat"] for r in results])
                reply_lat = merge_samples([r["reply_lat"] for r in results])
                lag = merge_samples([r["lag"] for r in results])
                errors: collections.Counter[str] = collections.Counter()
                for r in results:
                    errors.update(r["errors"])
                first = min(r["first"] for r in results)
                last = max(r["last"] for r in results)
                delivered = sum(r["delivered"] for r in results)
                row = {
                    "pairs": opened,
                    "offered_per_s": offered,
                    "msgs_per_s": round(delivered / max(last - first, 1e-6), 1),
                    **latency_fields(lat),
                    **latency_fields(reply_lat, "reply_"),
                    "sent": sum(r["sent"] for r in results),
                    "acked": sum(r["acked"] for r in results),
                    "delivered": delivered,
                    "lost": sum(r["lost"] for r in results),
                    "unanswered": sum(r["unanswered"] for r in results),
                    "errors": dict(errors),
                    "skipped_in_flight_cap": sum(r["skipped"] for r in results),
                    "disconnected": sum(st["server_closed"] for st in pool.all("status", group="durable")),
                    "send_lag_p99_ms": rounded(percentile(lag, 99)),
                    **cpu,
                }
                p99 = row["p99_ms"] if row["p99_ms"] is not None else math.inf
                row["sustained"] = bool(
                    p99 < GOAL_P99_MS and row["lost"] == 0 and not errors and not row["disconnected"]
                    and row["unanswered"] == 0 and row["skipped_in_flight_cap"] == 0
                    and row["msgs_per_s"] >= 0.9 * offered
                )
                note("durable step " + json.dumps(row, ensure_ascii=False))
                steps.append(row)
                # go on past the latency goal to find the capacity; stop once the hub is saturated
                if (row["msgs_per_s"] < 0.9 * offered or p99 > 1000 or row["lost"] or errors
                        or row["unanswered"] or row["skipped_in_flight_cap"] or row["disconnected"]):
                    break
            good = [r for r in steps if r["sustained"]]
            best = max(good, key=lambda r: r["msgs_per_s"]) if good else steps[0]
            top = max(steps, key=lambda r: r["msgs_per_s"])
            result = self.base("durable") | {
                "pairs": pairs,
                "msgs_per_s": best["msgs_per_s"],
                "p99_ms": best["p99_ms"],
                "lost": best["lost"],
                "p50_ms": best["p50_ms"],
                "max_ms": best["max_ms"],
                "reply_p50_ms": best["reply_p50_ms"],
                "reply_p99_ms": best["reply_p99_ms"],
                "offered_per_s": best["offered_per_s"],
                "sustained": best["sustained"],
                "step_s": args.step_seconds,
                "client_procs": procs,
                "client_cpu_pct": best["client_cpu_pct"],
                "client_cpu_max_proc_pct": best["client_cpu_max_proc_pct"],
                "hub_cpu_pct": best["hub_cpu_pct"],
                "pg_cpu_pct": best["pg_cpu_pct"],
                "machine_busy_pct": best["machine_busy_pct"],
                "max_msgs_per_s": top["msgs_per_s"],
                "at_max": {k: top[k] for k in ("offered_per_s", "p50_ms", "p99_ms", "reply_p99_ms", "lost",
                                               "hub_cpu_pct", "pg_cpu_pct", "client_cpu_pct")},
                "curve": [[r["offered_per_s"], r["msgs_per_s"], r["p99_ms"], r["lost"]] for r in steps],
                # msgs_per_s counts up to the last delivery, so a step that carried every message of
                # 3,000/s reads ~2,998: the goal is a sustained step offering 3,000 that achieved 99 % of it
                "goal_met": bool(best["sustained"] and best["offered_per_s"] >= GOAL_DURABLE_PER_S
                                 and best["msgs_per_s"] >= 0.99 * GOAL_DURABLE_PER_S),
            }
            emit(result)
            pool.all("close", group="durable")
        finally:
            self.release(pool)

    # -- (d) HTTP ask round trip

    def ask(self, rate: int) -> None:
        args = self.args
        accounts = self.accounts.ensure(max(args.accounts, 2), "doctor")
        calls = []
        for i in range(0, len(accounts) - 1, 2):
            a, b = accounts[i], accounts[i + 1]
            calls.append((a.token, "conversation/" + "~".join(sorted([a.id, b.id]))))
        pool = self.workers(1)
        try:
            window = self.cpu(pool)
            pool.send(0, "ask", calls=calls, rate=float(rate), duration=args.duration, warmup=2.0)
            time.sleep(2.0)
            window.start()
            reply = pool.recv(0, timeout=args.duration + 180)
            cpu = window.stop()
            lat = merge_samples([reply["lat"]])
            lag = merge_samples([reply["lag"]])
            emit(self.base("ask") | {
                "rate": rate,
                **latency_fields(lat),
                "achieved_per_s": round(len(lat) / max(reply["seconds"], 1e-6), 1),
                "requests": len(lat),
                "errors": reply["errors"],
                "message": "GetConversation",
                "duration_s": args.duration,
                "send_lag_p99_ms": rounded(percentile(lag, 99)),
                **cpu,
            })
        finally:
            self.release(pool)


# ---- command line -----------------------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or a comma-separated list, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError("numbers must be positive")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="CareHub benchmark: one JSON line per result on stdout (docs/benchmarks.md).",
    )
    parser.add_argument("name", nargs="?", default="all",
                        choices=["all", "idle", "fanout", "durable", "ask", "release-burst", "queue"],
                        help="the workload (default: all hub workloads, in this order: idle, fanout, durable, ask;"
                        " the outpatient ones, release-burst and queue, run only when named)")
    parser.add_argument("--url", help="a running hub (default: start one, embedded PostgreSQL unless "
                        "CAREHUB_DATABASE_URL is set)")
    parser.add_argument("--conns", type=_int_list, help="idle: connections to hold (default 1000,5000,10000,20000)")
    parser.add_argument("--subs", type=_int_list, help="fanout: subscribers (default 100,1000,5000)")
    parser.add_argument("--pairs", type=int, default=500, help="durable: sender/receiver pairs (default 500)")
    parser.add_argument("--rate", type=int, default=200, help="ask: requests per second (default 200)")
    parser.add_argument("--steps", type=_int_list,
                        help="offered rates to step through: fanout deliveries/s, durable msgs/s")
    parser.add_argument("--step-seconds", type=float, default=10.0, help="length of each rate step (default 10)")
    parser.add_argument("--duration", type=float, default=20.0, help="ask: measured seconds (default 20)")
    parser.add_argument("--hold", type=float, default=30.0,
                        help="idle: seconds to hold each level, CPU measured meanwhile (default 30: a heartbeat round)")
    parser.add_argument("--critical", action="store_true",
                        help="fanout: publish as critical (never dropped; a stuck subscriber is disconnected)")
    parser.add_argument("--accounts", type=int, default=100,
                        help="idle/fanout/ask: bench accounts shared by the connections (default 100)")
    parser.add_argument("--procs", type=int, default=0, help="client worker processes (default: per workload)")
    parser.add_argument("--concurrency", type=int, default=100, help="connection set-ups in flight per process")
    parser.add_argument("--admin-login", default="admin")
    parser.add_argument("--admin-password", default=os.environ.get("CAREHUB_BENCH_ADMIN_PASSWORD", "carehub-demo"))
    parser.add_argument("--admin-totp-secret", default=os.environ.get("CAREHUB_BENCH_ADMIN_TOTP", DEMO_TOTP_SECRET),
                        help="base32 TOTP secret of the admin account, when staff sign-in asks for a code "
                        "(default: the demo hospital's; '' for none)")
    parser.add_argument("--run-id", help="name the bench accounts bench-<ID>-<role>-<i> and reuse those an earlier run "
                        "with the same ID created (default: a fresh random ID)")
    parser.add_argument("--hub-pid", type=int, help="pid of the hub at --url (found from its port when local)")
    parser.add_argument("--keep-hub-data", action="store_true", help="keep the started hub's data folder and log")
    from carehub.bots import bench_outpatient

    bench_outpatient.add_arguments(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    limit = raise_nofile_limit()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    note(f"RLIMIT_NOFILE {limit}; {os.cpu_count()} CPUs")
    hub: OwnHub | None = None
    bench: Bench | None = None
    try:
        if args.url:
            url = args.url
            hub_pid = args.hub_pid
            host = httpx.URL(url).host
            if hub_pid is None and host in ("127.0.0.1", "localhost"):
                hub_pid = listener_pid(httpx.URL(url).port or 80)
            note(f"using the hub at {url}" + (f" (pid {hub_pid})" if hub_pid else " (pid unknown: no hub CPU figures)"))
        else:
            hub = OwnHub(keep_data=args.keep_hub_data)
            url = hub.start()
            hub_pid = hub.pid
        if args.name in ("release-burst", "queue"):
            from carehub.bots import bench_outpatient

            bench_outpatient.run(args.name, args, url, hub_pid, hub.sms_sim_url if hub is not None else None)
            return 0
        bench = Bench(args, url, hub_pid)
        names = ["idle", "fanout", "durable", "ask"] if args.name == "all" else [args.name]
        for name in names:
            note(f"--- {name}")
            if name == "idle":
                bench.idle(args.conns or DEFAULT_IDLE_CONNS)
            elif name == "fanout":
                bench.fanout(args.subs or DEFAULT_FANOUT_SUBS)
            elif name == "durable":
                bench.durable(args.pairs)
            else:
                bench.ask(args.rate)
            if hub is not None and hub.proc is not None and hub.proc.poll() is not None:
                raise RuntimeError(f"the hub exited (code {hub.proc.returncode}):\n{hub.log_tail()}")
        return 0
    except KeyboardInterrupt:
        note("interrupted")
        return 130
    finally:
        if bench is not None:
            bench.close()
        if hub is not None:
            hub.stop()


if __name__ == "__main__":
    from carehub.bots import bench as _self  # spawned workers must find worker_main in carehub.bots.bench

    sys.exit(_self.main())
