"""The hub as a real process: killed with SIGKILL and started again, nothing acknowledged is lost."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import trio

from carehub.bots.client import TotpSource, connect, login
from carehub.demo import DEMO_PASSWORD, DEMO_TOTP_SECRET

from .servers import KEYRING

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def hub_process(database_url: str, port: int) -> AsyncIterator[trio.Process]:
    env = dict(os.environ)
    env.update(
        CAREHUB_ACTOR_PLUGINS="tests.hub.kinds:Counter",
        PYTHONPATH=str(ROOT),
        CAREHUB_LOG_LEVEL="WARNING",
        CAREHUB_KEYS=KEYRING.to_json(),
    )
    cmd = [sys.executable, "-m", "carehub", "serve", "--port", str(port), "--database-url", database_url, "--no-seed"]
    proc = await trio.lowlevel.open_process(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        with trio.fail_after(30):
            while True:
                try:
                    async with httpx.AsyncClient() as http:
                        if (await http.get(base + "/readyz")).status_code == 200:
                            break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, "the hub process exited during start-up"
                await trio.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        await proc.wait()


async def call(base: str, token: str, to: str, type: str, body: dict[str, object]) -> object:
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}) as http:
        response = await http.post("/api/v1/call", json={"to": to, "type": type, "body": body})
    assert response.status_code == 200, response.text
    return response.json()["result"]


async def test_reminders_due_while_the_hub_was_down_fire_after_restart_marked_late(database_url: str) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with trio.fail_after(90):
        async with hub_process(database_url, port) as proc:
            token, _ = await login(base, "patient1", DEMO_PASSWORD)
            await call(base, token, "counter/ward-round", "RemindMe", {"seconds": 1.0, "text": "missed while down"})
            await call(base, token, "counter/ward-round", "RemindMe", {"seconds": 6.0, "text": "after restart"})
            proc.send_signal(signal.SIGKILL)
        await trio.sleep(2.5)  # the first reminder falls due while nothing runs
        async with hub_process(database_url, port):
            token, _ = await login(base, "patient1", DEMO_PASSWORD)
            while True:
                notes = await call(base, token, "counter/ward-round", "GetNotes", {})
                assert isinstance(notes, dict)
                if len(notes["notes"]) == 2:
                    break
                await trio.sleep(0.2)
    assert notes["notes"] == ["missed while down", "after restart"]
    assert notes["late"] == ["missed while down"], "only the reminder missed during the outage is late"


async def test_every_acknowledged_message_survives_kill_9_and_is_delivered(database_url: str) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    acknowledged: list[int] = []
    doctor_totp = TotpSource(DEMO_TOTP_SECRET)
    with trio.fail_after(90):
        async with hub_process(database_url, port) as proc:
            p_token, patient = await login(base, "patient3", DEMO_PASSWORD)
            _, doctor = await login(base, "doctor5", DEMO_PASSWORD, totp=await doctor_totp.code())
            address = "conversation/" + "~".join(sorted([patient["id"], doctor["id"]]))
            async with connect(base, p_token, device="phone") as client:

                in_flight = trio.Semaphore(16)  # the protocol's per-connection limit

                async def post(i: int) -> None:
                    async with in_flight:
                        result = await client.call(address, "PostMessage", {"text": f"第{i}条"})
                    acknowledged.append(result["n"])

                async with trio.open_nursery() as nursery:
                    for i in range(300):
                        nursery.start_soon(post, i)
                proc.send_signal(signal.SIGKILL)  # right after the last reply, no graceful anything
        async with hub_process(database_url, port):
            d_token, _ = await login(base, "doctor5", DEMO_PASSWORD, totp=await doctor_totp.code())
            async with connect(base, d_token, device="desk", resume_after=0) as doc:
                received = [await doc.next_delivery() for _ in range(len(acknowledged))]
    assert len(acknowledged) == 300
    assert sorted(f["body"]["n"] for f in received) == sorted(acknowledged)
    assert [f["seq"] for f in received] == list(range(1, 301)), "in order, no gaps"
