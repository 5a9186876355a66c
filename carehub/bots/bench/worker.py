"""Client worker processes: each runs commands from the coordinator in its own trio loop.

The coordinator (the ``scripts/bench`` process) only sends commands over a pipe and reads the
hub's ``/metrics``; the connections live in the workers (``--procs``), so one process's CPU is
not the limit. A command ``X`` is the worker method ``cmd_X``; each workload module adds its
commands as a mixin of :class:`WorkerBase` (:mod:`.loadclient` puts them together).
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import multiprocessing.connection
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx
import trio

from .wire import Handler, LeanWS, ServerClosed, ignore_frames, open_session


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


class WorkerBase:
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

    def frame_handler(self, name: str) -> Handler:
        """The handler ``cmd_open`` gives each connection: "idle" ignores frames, others are ``_on_<name>``."""
        if name == "idle":
            return ignore_frames
        handler: Handler = getattr(self, f"_on_{name}")
        return handler

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
                    reply = {"error": "; ".join(f"{type(e).__name__}: {e}" for e in leaves(err))}
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
        on_frame = self.frame_handler(handler)
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
        return {"closed": len(grp.conns), "server_closed": grp.server_closed, "codes": dict(grp.close_codes)}


def leaves(err: BaseException) -> list[BaseException]:
    """The single exceptions inside ``err`` (a worker reports each)."""
    if isinstance(err, BaseExceptionGroup):
        return [leaf for sub in err.exceptions for leaf in leaves(sub)]
    return [err]


class Workers:
    """A pool of client processes (spawned: a clean interpreter each)."""

    _spawned = 0
    _net = random.randint(10, 250)  # 127.<net>.x.y: fresh source addresses for every run

    def __init__(self, n: int, url: str, *, spread_sources: bool = True,
                 target: Callable[..., None]) -> None:
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


def keep(grp: Group, ws: LeanWS, hold: Callable[[Group, LeanWS], Awaitable[None]]) -> None:
    """Hold an opened connection in its group (``hold`` answers pings and reads until the group closes)."""
    grp.conns.append(ws)
    assert grp.nursery is not None
    grp.nursery.start_soon(hold, grp, ws)


async def for_each(tokens: Sequence[str], one: Callable[[str], Awaitable[None]]) -> None:
    async with trio.open_nursery() as nursery:
        for token in tokens:
            nursery.start_soon(one, token)
