"""The hub under test: ``carehub serve`` started (and restarted) by the bench, and its ``/metrics``."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from .machine import free_port, raise_nofile_limit
from .report import note


def _raise_limit_in_child() -> None:
    raise_nofile_limit()


class OwnHub:
    """``carehub serve`` in a subprocess of its own session (Ctrl-C here stops it cleanly)."""

    def __init__(self, *, keep_data: bool = False, env: dict[str, str] | None = None) -> None:
        self.keep_data = keep_data
        #: extra environment of the hub (``notify``: the simulated providers' CAREHUB_* settings)
        self.env = dict(env or {})
        self.tmp = Path(tempfile.mkdtemp(prefix="carehub-bench-"))
        self.tmp.chmod(0o755)  # the embedded PostgreSQL may run as another user
        self.log_path = self.tmp / "hub.log"
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.port = 0
        self.sms_sim_url: str | None = None  # the demo hub's SMS gateway simulator (patients' sign-in codes)

    def start(self, timeout: float = 180.0, *, port: int | None = None) -> str:
        """Start the hub (on ``port``, default a free one) and wait until ``/readyz`` says ready."""
        port = port or free_port()
        self.port = port
        env = dict(os.environ) | self.env
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
        log = open(self.log_path, "a")  # the child keeps writing to it (a restart appends)
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

    def restart(self, timeout: float = 180.0) -> float:
        """Stop the hub as an operator would (SIGTERM: each client gets a ``bye``) and start it
        again on the same port and data; returns the monotonic time it was ready again."""
        self._terminate()
        self.start(timeout, port=self.port)
        return time.monotonic()

    def kill(self) -> int:
        """``kill -9`` of the hub process alone, as a crash would (its embedded PostgreSQL lives on and
        is adopted by the next :meth:`start`); returns the pid killed."""
        proc = self.proc
        assert proc is not None and proc.poll() is None, "the hub is not running"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        return proc.pid

    def _terminate(self) -> None:
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

    def stop(self) -> None:
        self._terminate()
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
