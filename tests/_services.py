"""Find, or start, the servers the test suite needs. Plain functions: the fixtures live elsewhere.

Each function returns a URL and a cleanup function (idempotent; it is also registered with
:mod:`atexit`, so a server we started does not outlive the test run even if a fixture is skipped).

- PostgreSQL: ``$CAREHUB_TEST_DATABASE_URL``, else ``postgres@127.0.0.1:5432`` if it answers and may
  create databases, else a throwaway :class:`~carehub.storage.embedded.EmbeddedPostgres`.
- Redis: ``$CAREHUB_TEST_REDIS_URL``, else 127.0.0.1:6379 if it answers PING, else a throwaway
  ``redis-server`` on a free port (no persistence), else None (the caller skips).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["LOCAL_POSTGRES_DSN", "LOCAL_REDIS_URL", "find_or_start_postgres", "find_or_start_redis"]

Cleanup = Callable[[], None]

LOCAL_POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"


def _nothing() -> None:
    return None


def _once(action: Cleanup) -> Cleanup:
    """An idempotent, thread-safe version of ``action``, also run at interpreter exit."""
    lock = threading.Lock()
    done = False

    def cleanup() -> None:
        nonlocal done
        with lock:
            if done:
                return
            done = True
        atexit.unregister(cleanup)
        action()

    atexit.register(cleanup)
    return cleanup


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# -- PostgreSQL ------------------------------------------------------------------------------------


def _postgres_usable(dsn: str, timeout: float = 5.0) -> bool:
    """Whether ``dsn`` accepts us and lets us CREATE DATABASE (checked with asyncpg in a thread,
    so that it works whatever event loop the caller runs)."""

    async def check() -> bool:
        import asyncpg

        conn = await asyncpg.connect(dsn, timeout=timeout)
        try:
            allowed = await conn.fetchval("SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user")
            return bool(allowed)
        finally:
            await conn.close()

    result: list[bool] = []

    def run() -> None:
        try:
            result.append(asyncio.run(check()))
        except Exception:
            result.append(False)

    thread = threading.Thread(target=run, name="probe-postgres", daemon=True)
    thread.start()
    thread.join(timeout + 5.0)
    return bool(result and result[0])


def find_or_start_postgres(tmp_root: Path) -> tuple[str, Cleanup]:
    """An admin DSN (a database where CREATE DATABASE is allowed) and its cleanup function."""
    url = os.environ.get("CAREHUB_TEST_DATABASE_URL")
    if url:
        return url, _nothing
    if _port_open("127.0.0.1", 5432) and _postgres_usable(LOCAL_POSTGRES_DSN):
        return LOCAL_POSTGRES_DSN, _nothing

    from carehub.storage.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(Path(tmp_root) / "postgres")
    cleanup = _once(server.stop)
    try:
        server.start()
    except BaseException:
        cleanup()
        raise
    return server.admin_dsn, cleanup


# -- Redis -----------------------------------------------------------------------------------------


def _redis_ping(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(64)
                if not chunk:
                    break
                reply += chunk
            return reply.startswith(b"+PONG")
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _terminator(proc: subprocess.Popen[bytes]) -> Cleanup:
    return lambda: _terminate(proc)


def find_or_start_redis(tmp_root: Path) -> tuple[str | None, Cleanup]:
    """A Redis URL (None if there is no Redis to be had) and its cleanup function."""
    url = os.environ.get("CAREHUB_TEST_REDIS_URL")
    if url:
        return url, _nothing
    if _redis_ping("127.0.0.1", 6379):
        return LOCAL_REDIS_URL, _nothing
    exe = shutil.which("redis-server")
    if exe is None:
        return None, _nothing

    folder = Path(tmp_root) / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "redis.log"
    for _attempt in range(3):
        port = _free_port()  # racy, hence the attempts
        args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(folder), "--daemonize", "no", "--logfile", str(log), "--loglevel", "warning"]
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # ^C in the terminal goes to pytest, which cleans up
        )
        deadline = time.monotonic() + 10.0
        while proc.poll() is None and time.monotonic() < deadline:
            if _redis_ping("127.0.0.1", port):
                return f"redis://127.0.0.1:{port}/0", _once(_terminator(proc))
            time.sleep(0.02)
        _terminate(proc)
    try:
        tail = log.read_text(errors="replace")[-2000:]
    except OSError:
        tail = "(no log)"
    raise RuntimeError(f"redis-server did not start; its log ends with:\n{tail}")
