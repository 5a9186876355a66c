"""One bench run's context: the hub's URL (and pid), the command-line options, the accounts, the
client worker pools, the CPU windows, and the admin API the outpatient workloads set things up with."""

from __future__ import annotations

import argparse
import collections
import os
import random
import time
import uuid
from typing import Any

import httpx
import orjson
import trio

from .accounts import DEMO_TOTP_SECRET, Accounts, sign_in
from .hub import Metrics, OwnHub
from .loadclient import worker_main
from .machine import CpuWindow, postgres_pids
from .patients import identity
from .report import note, split
from .worker import Workers


class Bench:
    """What every workload's ``run(bench, ...)`` is given."""

    def __init__(self, args: argparse.Namespace, url: str, hub_pid: int | None, hub: OwnHub | None = None) -> None:
        self.args = args
        self.url = url.rstrip("/")
        self.hub_pid = hub_pid
        #: the hub the bench started (None with --url): ``reconnect`` restarts it
        self.hub = hub
        self.run = args.run_id or uuid.uuid4().hex[:6]
        self.metrics = Metrics(self.url, hub_pid)
        self.accounts = Accounts(self.url, args.admin_login, args.admin_password, self.run,
                                 reuse=bool(args.run_id), admin_totp_secret=args.admin_totp_secret or None,
                                 login_net=Workers._net)
        self.pools: list[Workers] = []
        self.http = httpx.Client(base_url=self.url, timeout=120)
        # patients: 127.<net>.x.y source addresses for their sign-ins, made-up phones from run_base
        self.net = random.randint(10, 250)
        self.run_base = random.randrange(10**8)
        self.made = 0
        self._admin: str | None = None

    def close(self) -> None:
        for pool in self.pools:
            pool.close()
        self.pools.clear()
        self.metrics.close()
        self.http.close()

    # -- client processes

    def workers(self, n: int) -> Workers:
        pool = Workers(n, self.url, target=worker_main)
        self.pools.append(pool)
        return pool

    def release(self, pool: Workers) -> None:
        pool.close()
        self.pools.remove(pool)

    def cpu(self, *pools: Workers) -> CpuWindow:
        hub = self
        return CpuWindow({
            "client": lambda: [os.getpid(), *[pid for pool in pools for pid in pool.pids]],
            "hub": lambda: [hub.hub_pid] if hub.hub_pid is not None else [],
            "pg": postgres_pids,
        })

    def base(self, name: str) -> dict[str, Any]:
        return {"bench": name, "url": self.url}

    # -- the admin API (outpatient set-up)

    def admin(self) -> dict[str, str]:
        if self._admin is None:
            self._admin = trio.run(lambda: sign_in(self.url, self.args.admin_login, self.args.admin_password,
                                                   totp_secret=self.args.admin_totp_secret or DEMO_TOTP_SECRET))[0]
        return {"Authorization": f"Bearer {self._admin}"}

    def call(self, method: str, path: str, *expected: int, headers: dict[str, str] | None = None,
             **kwargs: Any) -> Any:
        response = self.http.request(method, path, headers=headers or self.admin(), **kwargs)
        if response.status_code not in (expected or (200,)):
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None

    # -- patients

    @property
    def sms_sim_url(self) -> str:
        url: str | None = self.args.sms_sim or (self.hub.sms_sim_url if self.hub is not None else None)
        if not url:
            raise SystemExit("scripts/bench: patients sign in by SMS code: give the hub's SMS gateway simulator "
                             "with --sms-sim URL (a hub started by the bench has one)")
        return url

    def patients(self, pool: Workers, n: int, *, verify: bool = True) -> list[tuple[str, str]]:
        """``n`` fresh patients signed in by SMS, ``(token, patient id)`` each; ``verify``: face-checked
        (a patient must be real-name verified to book)."""
        sms_url = self.sms_sim_url
        started = time.monotonic()
        people = []
        for k in range(n):
            i = self.made + k
            people.append((i, *identity(self.run_base, i)))
        self.made += n
        replies = pool.all("provision", [
            {"people": part, "sms_url": sms_url, "net": self.net, "verify": verify}
            for part in split(people, len(pool))
        ], timeout=3600)
        made = sorted(m for r in replies for m in r["made"])
        failed = sum(r["failed"] for r in replies)
        if failed:
            errors = collections.Counter[str]()
            for r in replies:
                errors.update(r["errors"])
            note(f"patients: {failed} could not be made ready: {dict(errors.most_common(3))}")
        how = "signed in by SMS and verified by face check" if verify else "signed in by SMS"
        note(f"patients: {len(made)} {how} in {time.monotonic() - started:.0f} s")
        return [(token, pid) for _i, token, pid in made]

    def kept_patients(self, pool: Workers, n: int, *, verify: bool = True) -> list[tuple[str, str]]:
        """:meth:`patients`, kept in ``--patients-file`` for a later run against the same hub (its
        data kept): a file holding patients of this hub (verified ones if ``verify``) gives its
        first ``n``, and a file holding fewer is topped up and written back."""
        path = self.args.patients_file
        kept: list[tuple[str, str]] = []
        if path:
            try:
                with open(path, "rb") as f:
                    data = orjson.loads(f.read())
            except (OSError, orjson.JSONDecodeError):
                data = {}
            fits = data.get("verified", True) or not verify  # files from before this field: release-burst's
            if data.get("url") == self.url and fits:
                kept = [(token, pid) for token, pid in data.get("people", [])]
                note(f"patients: {min(len(kept), n)} reused from {path}")
        if len(kept) >= n:
            return kept[:n]
        people = kept + self.patients(pool, n - len(kept), verify=verify)
        if path:
            with open(path, "wb") as f:
                f.write(orjson.dumps({"url": self.url, "verified": verify, "people": people}))
        return people
