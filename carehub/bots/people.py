"""Simulated patients and doctors chatting over CareHub's public protocol (``carehub bots``).

The bots are outsiders: they sign in over HTTP with the demo hospital's accounts and talk over
``/ws`` through :mod:`carehub.bots.client` only, so every message they exchange crosses the same
integration points a phone app does.

- Each patient posts a Chinese sample message to one doctor's conversation every ``interval``
  seconds (``conversation/<idA>~<idB>``, message ``PostMessage``).
- Each doctor answers every message a patient sends it.
- Every bot acknowledges what it receives; after a disconnect it reconnects (after the
  ``reconnect_after_ms`` of a ``bye`` frame when the server sent one, else with jittered
  exponential backoff) and resumes its delivery stream after the last sequence it saw.

More bots than demo accounts share accounts, each bot under its own device name. A doctor bot
answers only the patient bots assigned to it (the patient tags its ``client_ref``), so two devices
of one doctor account never answer the same message twice.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import signal
import sys
import threading
from typing import Any, Literal

import httpx
import trio
from trio_websocket import ConnectionClosed, HandshakeError

from carehub.bots.client import CallFailed, HubClient, connect, login, totp_for

log = logging.getLogger("carehub.bots")

#: The demo hospital's accounts (carehub/demo.py; bots may not import it).
DEMO_PASSWORD = "carehub-demo"
#: The demo staff accounts' TOTP secret (documented in the README); doctors sign in with it.
DEMO_TOTP_SECRET = "CAREHUBDEMOSTAFFTOTPSECRET234567"


async def _demo_login(url: str, login_name: str) -> tuple[str, dict[str, Any]]:
    totp = None
    if login_name.startswith("doctor"):
        totp = await totp_for(url, login_name, DEMO_TOTP_SECRET).code()
    return await login(url, login_name, DEMO_PASSWORD, totp=totp)
PATIENT_LOGINS = ("patient1", "patient2", "patient3", "patient4")
DOCTOR_LOGINS = ("doctor1", "doctor2", "doctor3", "doctor4", "doctor5", "doctor6")

PATIENT_TEXTS = (
    "医生您好，我最近总是胸闷，爬两层楼就喘。",
    "昨晚血压测了是 150/95，需要调整药量吗？",
    "孩子咳嗽三天了，夜里比较厉害，要不要来医院？",
    "请问复诊需要空腹吗？",
    "吃了您开的药以后有点头晕，正常吗？",
    "检查报告出来了，麻烦您帮我看一下。",
    "膝盖上下楼梯时疼，休息后会好一些。",
    "皮肤上的疹子比上周少了一些，还要继续涂药膏吗？",
    "我想预约下周二上午的号，还有吗？",
    "谢谢医生，我按时吃药了。",
)

DOCTOR_TEXTS = (
    "您好，收到。请先安静休息，注意记录症状出现的时间。",
    "药量先不用调整，继续按时服用，一周后复测血压发给我。",
    "建议来门诊当面看一下，挂号时选择呼吸内科。",
    "复诊需要空腹抽血，早上 8 点前到门诊楼一层采血处。",
    "头晕可能与降压药有关，起身时动作慢一些，如加重请及时就诊。",
    "报告我看过了，总体正常，个别指标下次复查。",
    "注意少爬楼梯，可以先做热敷，两周后来复诊。",
    "药膏再用一周，症状消失后逐渐减量。",
    "好的，已帮您留意号源，请在小程序上完成预约。",
    "不客气，有不舒服随时联系我。",
)

#: Calls a doctor bot keeps in flight while answering (the server allows 16 per connection).
ANSWERS_IN_FLIGHT = 8
BACKOFF_MIN = 0.5
BACKOFF_MAX = 15.0
#: Message ids a doctor bot remembers having answered (a resumed stream may repeat a few).
ANSWERED_MEMORY = 10_000

Role = Literal["patient", "doctor"]
_DISCONNECTED = (ConnectionClosed, HandshakeError, OSError, trio.TooSlowError)


@dataclasses.dataclass
class Tally:
    """What all bots did: chat messages sent and received (from others), failures, reconnects."""

    sent: int = 0
    received: int = 0
    answered: int = 0
    failed: int = 0
    reconnects: int = 0


@dataclasses.dataclass
class Account:
    """A signed-in demo account; several bots (devices) may share it."""

    login: str
    account_id: str
    token: str
    last_seq: int  # the account's stream position when the bots started


def conversation_address(a: str, b: str) -> str:
    return "conversation/" + "~".join(sorted([a, b]))


class Bot:
    """One simulated device: a patient posting on a schedule, or a doctor answering."""

    def __init__(
        self, url: str, role: Role, index: int, account: Account, tally: Tally, *, interval: float,
        peer_id: str | None = None, peer_index: int | None = None, primary: bool = True,
    ) -> None:
        self.url = url
        self.role = role
        self.index = index
        self.account = account
        self.device = f"bot-{role}-{index}"
        self.tally = tally
        self.interval = interval
        self.peer_id = peer_id  # a patient's doctor
        self.peer_index = peer_index  # that doctor's bot, if it runs here
        self.primary = primary  # the first bot of its account answers messages no bot tagged
        self.last_seq = account.last_seq
        self._answered: dict[str, None] = {}
        self._slots = trio.Semaphore(ANSWERS_IN_FLIGHT)

    async def run(self) -> None:
        """Stay connected until cancelled, reconnecting as the server advises."""
        attempt = 0
        while True:
            bye_ms: int | None = None
            failure: BaseException | None = None
            client: HubClient | None = None
            try:
                async with connect(self.url, self.account.token, device=self.device,
                                   resume_after=self.last_seq) as client:
                    attempt = 0
                    await self._converse(client)
            except* _DISCONNECTED as group:
                failure = group.exceptions[0]
            except* CallFailed as group:
                failure = group.exceptions[0]
                await self._sign_in_again()
            if client is not None and client.bye is not None:
                advice = client.bye.get("reconnect_after_ms")
                if isinstance(advice, int) and advice >= 0:
                    bye_ms = advice
            if bye_ms is not None:
                delay = bye_ms / 1000
            else:
                ceiling = min(BACKOFF_MAX, BACKOFF_MIN * 2**attempt)
                delay = random.uniform(ceiling / 2, ceiling)
            attempt += 1
            self.tally.reconnects += 1
            why = "closed by the server" if failure is None else f"{type(failure).__name__}: {failure}"
            log.info("%s (%s) disconnected (%s); reconnecting in %.1f s", self.device, self.account.login, why, delay)
            await trio.sleep(delay)

    async def _sign_in_again(self) -> None:
        """The token was refused (expired, signed out): sign in for a fresh one, best effort."""
        try:
            self.account.token, _ = await _demo_login(self.url, self.account.login)
        except (CallFailed, httpx.HTTPError) as err:
            log.warning("%s could not sign in again: %s", self.device, err)

    async def _converse(self, client: HubClient) -> None:
        """Run until this connection closes."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._receive, client, nursery)
            if self.role == "patient":
                nursery.start_soon(self._post, client)
            await client.closed.wait()
            nursery.cancel_scope.cancel()

    async def _post(self, client: HubClient) -> None:
        assert self.peer_id is not None
        address = conversation_address(self.account.account_id, self.peer_id)
        n = 0
        # start at a random point of the interval so the bots do not post in lockstep
        next_at = trio.current_time() + random.uniform(0, self.interval)
        while True:
            await trio.sleep_until(next_at)
            next_at = max(next_at + self.interval, trio.current_time())
            n += 1
            tag = f"bot:{self.index}:{self.peer_index if self.peer_index is not None else '-'}:{n}"
            try:
                await client.call(address, "PostMessage", {"text": random.choice(PATIENT_TEXTS), "client_ref": tag})
            except ConnectionClosed:
                return
            except CallFailed as err:
                if err.code == "closed":
                    return
                self.tally.failed += 1
                log.warning("%s could not post to %s: %s", self.device, address, err)
            else:
                self.tally.sent += 1

    async def _receive(self, client: HubClient, nursery: trio.Nursery) -> None:
        try:
            async for frame in client.deliveries:
                seq = frame.get("seq")
                if isinstance(seq, int) and seq > self.last_seq:
                    self.last_seq = seq
                    self._on_delivery(frame, client, nursery)
                elif not isinstance(seq, int):
                    continue
                # acknowledge once the burst that arrived together is handled
                if client.deliveries.statistics().current_buffer_used == 0:
                    await client.ack(self.last_seq)
        except ConnectionClosed:
            return

    def _on_delivery(self, frame: dict[str, Any], client: HubClient, nursery: trio.Nursery) -> None:
        body = frame.get("body")
        if frame.get("type") != "chat.message" or not isinstance(body, dict):
            return
        if body.get("from") == self.account.account_id:
            return  # our own message (or another device's of this account), echoed to every device
        self.tally.received += 1
        if self.role == "doctor" and self._should_answer(body):
            msg_id = str(frame.get("id"))
            if msg_id in self._answered:
                return
            self._answered[msg_id] = None
            if len(self._answered) > ANSWERED_MEMORY:
                del self._answered[next(iter(self._answered))]
            nursery.start_soon(self._answer, client, body)

    def _should_answer(self, body: dict[str, Any]) -> bool:
        ref = body.get("client_ref")
        if isinstance(ref, str) and ref.startswith("bot:"):
            parts = ref.split(":")
            return len(parts) == 4 and parts[2] == str(self.index)
        return self.primary  # a person (not a bot) wrote: one device of the account answers

    async def _answer(self, client: HubClient, body: dict[str, Any]) -> None:
        conversation = body.get("conversation")
        if not isinstance(conversation, str):
            return
        async with self._slots:
            try:
                await client.call("conversation/" + conversation, "PostMessage",
                                  {"text": random.choice(DOCTOR_TEXTS), "client_ref": f"reply:{self.index}"})
            except ConnectionClosed:
                return
            except CallFailed as err:
                if err.code != "closed":
                    self.tally.failed += 1
                    log.warning("%s could not answer in %s: %s", self.device, conversation, err)
                return
            self.tally.sent += 1
            self.tally.answered += 1


async def _sign_in(url: str, logins: list[str]) -> dict[str, Account]:
    """Sign each distinct login in once and note where its delivery stream stands."""
    accounts: dict[str, Account] = {}

    async def one(login_name: str) -> None:
        token, account = await _demo_login(url, login_name)
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            response = await http.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
            response.raise_for_status()
            last_seq = int(response.json()["stream"]["last_seq"])
        accounts[login_name] = Account(login_name, str(account["id"]), token, last_seq)

    async with trio.open_nursery() as nursery:
        for name in dict.fromkeys(logins):
            nursery.start_soon(one, name)
    return accounts


async def _directory_doctors(url: str) -> list[str]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        response = await http.get("/api/v1/doctors")
        response.raise_for_status()
        return [str(d["id"]) for d in response.json()["doctors"]]


async def _stop_on_signal(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


async def run_bots(url: str, *, patients: int, doctors: int, duration: float, interval: float) -> int:
    """Run ``patients`` patient bots and ``doctors`` doctor bots against the hub at ``url``.

    They chat for ``duration`` seconds counted from when all are signed in (0: until cancelled,
    or Ctrl-C when run from the command line), then a one-line summary is printed. Returns the
    process exit status: 0, or 1/2 when the bots could not sign in or were given bad numbers.
    """
    if patients < 0 or doctors < 0 or patients + doctors == 0 or interval <= 0 or not duration >= 0:
        print("机器人参数无效 (bad arguments): patients/doctors >= 0 and not both 0, interval > 0, duration >= 0",
              file=sys.stderr)
        return 2
    url = url.rstrip("/")
    patient_logins = [PATIENT_LOGINS[i % len(PATIENT_LOGINS)] for i in range(patients)]
    doctor_logins = [DOCTOR_LOGINS[i % len(DOCTOR_LOGINS)] for i in range(doctors)]
    problem: BaseException | None = None
    try:
        accounts = await _sign_in(url, patient_logins + doctor_logins)
        fallback_doctors = await _directory_doctors(url) if doctors == 0 else []
    except* (CallFailed, httpx.HTTPError, OSError, KeyError, ValueError) as group:
        problem = group.exceptions[0]
    if problem is not None:
        print(f"机器人无法登录 {url} (bots could not sign in): {problem}", file=sys.stderr)
        return 1

    tally = Tally()
    bots: list[Bot] = []
    seen: set[str] = set()
    for i, name in enumerate(doctor_logins):
        bots.append(Bot(url, "doctor", i, accounts[name], tally, interval=interval, primary=name not in seen))
        seen.add(name)
    for i, name in enumerate(patient_logins):
        if doctors:
            peer_index: int | None = i % doctors
            peer_id = accounts[doctor_logins[i % doctors]].account_id
        elif fallback_doctors:
            peer_index, peer_id = None, fallback_doctors[i % len(fallback_doctors)]
        else:
            print("没有可联系的医生 (no doctors in the directory)", file=sys.stderr)
            return 1
        bots.append(Bot(url, "patient", i, accounts[name], tally, interval=interval, peer_id=peer_id,
                        peer_index=peer_index))

    started = trio.current_time()
    try:
        with trio.CancelScope() as scope:
            if duration > 0:
                scope.deadline = started + duration
            async with trio.open_nursery() as nursery:
                if duration == 0 and threading.current_thread() is threading.main_thread():
                    nursery.start_soon(_stop_on_signal, scope)
                for bot in bots:
                    nursery.start_soon(bot.run)
    finally:
        elapsed = trio.current_time() - started
        print(
            f"机器人结束 (bots done): {patients} 位患者 patients, {doctors} 位医生 doctors, {elapsed:.1f} s; "
            f"发送 sent={tally.sent}, 收到 received={tally.received}, 医生回复 answered={tally.answered}, "
            f"失败 failed={tally.failed}, 重连 reconnects={tally.reconnects}",
            flush=True,
        )
    return 0


__all__ = ["DEMO_PASSWORD", "Tally", "run_bots"]
