"""Patients as their phones make them: signed in by SMS code (read from the hub's SMS gateway
simulator), added as "self" and, for booking, real-name verified by a face check at the FaceID
simulator.

Patients are made fresh every run (new phones and synthetic ID numbers with a valid GB 11643
check digit). The hub limits SMS codes and sign-ins per client address, so each group of ten
patients signs in from its own loopback address (127.x.y.z), as people on their own phones do.
"""

from __future__ import annotations

import collections
import datetime as dt
from typing import Any

import httpx
import orjson
import trio

from carehub.bots.faceid_sim import check_digit

from .wire import LeanHTTP
from .worker import WorkerBase

#: patients signing in from one source address (the hub allows 10 SMS codes a minute per address)
PATIENTS_PER_ADDRESS = 10
#: a patient whose sign-in lost its connection starts over (as someone new) this many times in all
TRANSPORT_ATTEMPTS = 3
#: how long a patient waits for their SMS code to reach the gateway simulator
SMS_WAIT = 60.0


class Refused(Exception):
    pass


def _json(status: int, payload: bytes, what: str, *expected: int) -> Any:
    if status not in expected:
        raise Refused(f"{what}: HTTP {status} {payload[:200].decode(errors='replace')}")
    return orjson.loads(payload) if payload else None


def identity(run_base: int, i: int) -> tuple[str, str, str]:
    """A made-up phone, name and ID number (valid check digit, adult) for patient ``i`` of a run."""
    phone = f"17{(run_base + i) % 10**9:09d}"
    born = dt.date(1950, 1, 1) + dt.timedelta(days=(run_base // 7 + i // 900) % 18000)
    first17 = f"110101{born:%Y%m%d}{i % 900 + 100:03d}"
    return phone, f"压测患者{i}", first17 + check_digit(first17)


async def _sms_code(sim: LeanHTTP, phone: str) -> str:
    """The code the hub texted to ``phone``, read at the SMS gateway simulator. The hub hands the
    message to the gateway after answering, so on a busy machine it may take a while to be there."""
    deadline = trio.current_time() + SMS_WAIT
    while True:
        status, payload = await sim.request("GET", f"/_sim/messages?phone={phone}&limit=1")
        messages = _json(status, payload, "sms sim", 200)["messages"]
        if messages:
            return str(messages[0]["params"]["code"])
        if trio.current_time() > deadline:
            raise Refused(f"no SMS reached the simulator for {phone} within {SMS_WAIT:.0f} s")
        await trio.sleep(0.2)


class PatientCommands(WorkerBase):
    """A worker's side of making patients (``provision``)."""

    async def cmd_provision(self, people: list[tuple[int, str, str, str]], sms_url: str, net: int,
                            concurrency: int = 64, verify: bool = True) -> dict[str, Any]:
        """Sign in by SMS (``verify``: add oneself and pass the face check); ``people`` are
        ``(i, phone, name, id_number)``; ``made`` holds ``(i, token, patient id or, unverified, account id)``."""
        sms = httpx.URL(sms_url)
        limiter = trio.CapacityLimiter(concurrency)
        made: list[tuple[int, str, str]] = []
        errors: collections.Counter[str] = collections.Counter()

        async def one(i: int, phone: str, name: str, id_number: str) -> None:
            group = i // PATIENTS_PER_ADDRESS
            src = f"127.{net}.{group // 250}.{2 + group % 250}"
            async with limiter:
                for attempt in range(TRANSPORT_ATTEMPTS):
                    try:
                        made.append((i, *await self._make_patient(src, sms, phone, name, id_number, verify)))
                        return
                    except (Refused, KeyError, IndexError) as err:  # an answer, not a lost connection
                        errors[f"{type(err).__name__}: {str(err)[:120]}"] += 1
                        return
                    except (OSError, ConnectionError, trio.BrokenResourceError) as err:
                        # a connection lost on the way: the person starts over as someone new, from an
                        # address of their own (the old one may have used its SMS codes for the minute)
                        if attempt == TRANSPORT_ATTEMPTS - 1:
                            errors[f"{type(err).__name__}: {str(err)[:120]}"] += 1
                        again = i * TRANSPORT_ATTEMPTS + attempt
                        phone, name, id_number = identity(9 * 10**8 + self.index * 10**7, again)
                        src = f"127.{net}.{100 + again // 250 % 150}.{2 + again % 250}"

        async with trio.open_nursery() as nursery:
            for person in people:
                nursery.start_soon(one, *person)
        return {"made": made, "errors": dict(errors.most_common(5)), "failed": sum(errors.values())}

    async def _make_patient(self, src: str, sms: httpx.URL, phone: str, name: str, id_number: str,
                            verify: bool) -> tuple[str, str]:
        """One person signed in by SMS code, added as "self" and face-checked: ``(token, patient id)``;
        without ``verify`` only signed in: ``(token, account id)``."""
        hub = await LeanHTTP.open(self.host, self.port, src)
        sim: LeanHTTP | None = None
        try:
            _json(*await hub.post("/api/v1/auth/sms-code", orjson.dumps({"phone": phone}), None), "sms-code", 200)
            # opened only now: the simulator closes a connection idle for 5 s (Hypercorn's keep-alive),
            # and on a busy hub the code request alone can take longer
            sim = await LeanHTTP.open(sms.host, sms.port or 80, None)
            code = await _sms_code(sim, phone)
            login = _json(*await hub.post("/api/v1/auth/sms-login",
                                          orjson.dumps({"phone": phone, "code": code}), None), "login", 200)
            if not verify:
                return login["token"], str(login["account"]["id"])
            auth = f"Bearer {login['token']}"
            person = _json(*await hub.post("/api/v1/me/patients", orjson.dumps(
                {"name": name, "id_number": id_number, "relation": "self"}), auth), "add patient", 201)
            pid = person["id"]
            started = _json(*await hub.post(f"/api/v1/me/patients/{pid}/face", b"{}", auth), "face", 200)
            page = httpx.URL(started["url"])
            face = await LeanHTTP.open(page.host, page.port or 80, None)
            try:  # the person does the face check at the provider's page (302 back to us)
                _json(*await face.request("GET", page.raw_path.decode()), "face page", 302, 200)
            finally:
                await trio.aclose_forcefully(face.stream)
            result = _json(*await hub.post(f"/api/v1/me/patients/{pid}/face/result", b"{}", auth), "face result", 200)
            if result["status"] != "passed":
                raise Refused(f"face check {result['status']}: {result.get('reason')}")
            return login["token"], pid
        finally:
            await trio.aclose_forcefully(hub.stream)
            if sim is not None:
                await trio.aclose_forcefully(sim.stream)
