"""The machine the bench runs on, read from ``/proc``: CPU used by the hub, PostgreSQL, the load
client and everything else over a window, file-descriptor limits, the pid listening on a port."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import time
from collections.abc import Callable, Sequence


def raise_nofile_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return int(soft)


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
