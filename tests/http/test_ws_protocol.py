"""The WebSocket gateway: calls reply after commit, deliveries, resume, and every kind of bad frame."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import msgpack
import orjson
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from carehub.bots.client import CallFailed, connect, ws_url

from .conftest import Server, eventually


def chat(a: str, b: str) -> str:
    return "conversation/" + "~".join(sorted([a, b]))


async def test_a_call_is_answered_after_commit_and_delivered_to_both_people(server: Server) -> None:
    p_token, d_token = await server.token("patient1"), await server.token("doctor1")
    patient, doctor = await server.account_id("patient1"), await server.account_id("doctor1")
    with trio.fail_after(20):
        async with connect(server.base, p_token) as pc, connect(server.base, d_token) as dc:
            result = await pc.call(chat(patient, doctor), "PostMessage", {"text": "医生您好，我最近胸闷"})
            assert result["n"] == 1
            got = await dc.next_delivery()
            assert got["type"] == "chat.message"
            assert got["body"]["text"] == "医生您好，我最近胸闷"
            assert got["body"]["from"] == patient
            mine = await pc.next_delivery()
            assert mine["id"] == got["id"]


async def test_a_binary_msgpack_connection_speaks_the_same_protocol(server: Server) -> None:
    token = await server.token("patient1")
    patient, doctor = await server.account_id("patient1"), await server.account_id("doctor2")
    with trio.fail_after(20):
        async with connect(server.base, token, codec="msgpack") as client:
            assert client.welcome is not None and client.welcome["protocol"] == 1
            await client.call(chat(patient, doctor), "PostMessage", {"text": "复诊"})
            got = await client.next_delivery()
            assert got["body"]["text"] == "复诊"


async def test_a_patient_cannot_post_into_someone_elses_conversation(server: Server) -> None:
    token = await server.token("patient1")
    other, doctor = await server.account_id("patient2"), await server.account_id("doctor1")
    with trio.fail_after(20):
        async with connect(server.base, token) as client:
            with pytest.raises(CallFailed, match="forbidden"):
                await client.call(chat(other, doctor), "PostMessage", {"text": "hi"})


async def test_resume_after_a_forced_disconnect_yields_no_gap_and_no_unrecognisable_duplicate(
    server: Server,
) -> None:
    p_token, d_token = await server.token("patient1"), await server.account_id("doctor1")
    patient = await server.account_id("patient1")
    doctor_token = await server.token("doctor1")
    address = chat(patient, d_token)
    seen: list[dict[str, object]] = []
    with trio.fail_after(30):
        async with connect(server.base, p_token, device="phone") as pc, connect(server.base, doctor_token) as dc:
            for i in range(5):
                await dc.call(address, "PostMessage", {"text": f"m{i}"})
            for _ in range(5):
                seen.append(await pc.next_delivery())
            await pc.ack(seen[2]["seq"])  # type: ignore[arg-type]
            last_acked = int(seen[2]["seq"])  # type: ignore[call-overload]
        # the phone drops off; the doctor keeps writing
        async with connect(server.base, doctor_token) as dc:
            for i in range(5, 10):
                await dc.call(address, "PostMessage", {"text": f"m{i}"})
        async with connect(server.base, p_token, device="phone", resume_after=last_acked) as pc:
            resumed = [await pc.next_delivery() for _ in range(7)]
    seqs = [f["seq"] for f in resumed]
    assert seqs == list(range(last_acked + 1, last_acked + 8)), "no gap, in order"
    texts = [f["body"]["text"] for f in resumed]  # type: ignore[index]
    assert texts == [f"m{i}" for i in range(3, 10)]
    # the two re-sent messages carry the ids the phone already saw, so it can drop them
    assert {f["id"] for f in resumed[:2]} == {f["id"] for f in seen[3:5]}


async def test_a_device_that_does_not_say_where_to_resume_continues_from_its_last_ack(server: Server) -> None:
    p_token, doctor_token = await server.token("patient1"), await server.token("doctor1")
    address = chat(await server.account_id("patient1"), await server.account_id("doctor1"))
    with trio.fail_after(30):
        async with connect(server.base, p_token, device="tablet", resume_after=0) as pc:
            async with connect(server.base, doctor_token) as dc:
                await dc.call(address, "PostMessage", {"text": "one"})
                await dc.call(address, "PostMessage", {"text": "two"})
            first = await pc.next_delivery()
            await pc.ack(first["seq"])
            await pc.next_delivery()
            await trio.sleep(0.1)
        async with connect(server.base, p_token, device="tablet") as pc:
            again = await pc.next_delivery()
    assert again["body"]["text"] == "two"


async def test_two_devices_of_one_account_each_get_every_message(server: Server) -> None:
    p_token, doctor_token = await server.token("patient2"), await server.token("doctor3")
    address = chat(await server.account_id("patient2"), await server.account_id("doctor3"))
    with trio.fail_after(30):
        async with connect(server.base, p_token, device="phone") as phone, connect(
            server.base, p_token, device="pc"
        ) as pc, connect(server.base, doctor_token) as dc:
            for i in range(3):
                await dc.call(address, "PostMessage", {"text": f"x{i}"})
            on_phone = [(await phone.next_delivery())["body"]["text"] for _ in range(3)]
            on_pc = [(await pc.next_delivery())["body"]["text"] for _ in range(3)]
    assert on_phone == on_pc == ["x0", "x1", "x2"]


# ---- bad frames: each gets its error, the connection or the hub survives as documented -------


async def raw(server: Server, token: str | None = None, subprotocol: str = "carehub.v1.json"):  # type: ignore[no-untyped-def]
    return open_websocket_url(ws_url(server.base), subprotocols=[subprotocol])


async def recv_json(ws) -> dict[str, object]:  # type: ignore[no-untyped-def]
    while True:
        frame = orjson.loads(await ws.get_message())
        if frame.get("op") not in ("ping",):
            return frame  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "bad_frame"),
        ("[1, 2, 3]", "bad_frame"),
        ('{"no_op": true}', "bad_frame"),
        ('{"op": "teleport"}', "unknown_op"),
        ('{"op": "call", "id": 1, "to": "conversation/a~b", "type": "PostMessage"}', "not_authenticated"),
    ],
)
async def test_a_malformed_frame_before_auth_gets_an_error_frame_and_the_connection_stays(
    server: Server, frame: str, code: str
) -> None:
    with trio.fail_after(15):
        async with open_websocket_url(ws_url(server.base), subprotocols=["carehub.v1.json"]) as ws:
            await ws.send_message(frame)
            reply = await recv_json(ws)
            assert reply["op"] == "error" and reply["code"] == code, reply
            await ws.send_message('{"op": "ping", "t": 1}')
            assert (await recv_json(ws))["op"] == "pong"


async def test_a_binary_frame_on_a_json_connection_is_refused_with_an_error(server: Server) -> None:
    with trio.fail_after(15):
        async with open_websocket_url(ws_url(server.base), subprotocols=["carehub.v1.json"]) as ws:
            await ws.send_message(b"\x81\xa2op\xa4ping")
            reply = await recv_json(ws)
            assert reply["code"] == "bad_frame" and "binary" in str(reply["message"])


async def test_garbage_on_a_msgpack_connection_gets_an_error_frame(server: Server) -> None:
    with trio.fail_after(15):
        async with open_websocket_url(ws_url(server.base), subprotocols=["carehub.v1.msgpack"]) as ws:
            await ws.send_message(b"\xc1\xc1\xc1")
            reply = msgpack.unpackb(await ws.get_message(), raw=False)
            assert reply["op"] == "error" and reply["code"] == "bad_frame"


async def test_a_bad_token_gets_an_error_and_close_code_4001(server: Server) -> None:
    with trio.fail_after(15):
        async with open_websocket_url(ws_url(server.base), subprotocols=["carehub.v1.json"]) as ws:
            await ws.send_message('{"op": "auth", "token": "forged"}')
            reply = await recv_json(ws)
            assert reply["code"] == "auth_failed"
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.get_message()
            assert closed.value.reason.code == 4001


async def test_an_oversized_frame_closes_with_1009_and_the_hub_keeps_serving(server: Server) -> None:
    token = await server.token("patient1")
    with trio.fail_after(15):
        async with open_websocket_url(ws_url(server.base), subprotocols=["carehub.v1.json"]) as ws:
            await ws.send_message('{"op": "ping", "pad": "' + "x" * 70_000 + '"}')
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.get_message()
            assert closed.value.reason.code == 1009
        async with connect(server.base, token) as client:
            assert client.welcome is not None


async def test_a_call_with_an_unknown_message_type_is_answered_with_bad_message(server: Server) -> None:
    token = await server.token("patient1")
    address = chat(await server.account_id("patient1"), await server.account_id("doctor1"))
    with trio.fail_after(15):
        async with connect(server.base, token) as client:
            with pytest.raises(CallFailed, match="bad_message"):
                await client.call(address, "DeleteEverything", {})
            with pytest.raises(CallFailed, match="bad_message"):
                await client.call(address, "PostMessage", {"text": 42})
            with pytest.raises(CallFailed, match="unknown_actor"):
                await client.call("spaceship/1", "Launch", {})
            assert (await client.call(address, "PostMessage", {"text": "still fine"}))["n"] == 1


async def test_an_unknown_command_is_answered_with_404_and_the_connection_stays(server: Server) -> None:
    with trio.fail_after(15):
        async with connect(server.base, await server.token("patient1")) as client:
            with pytest.raises(CallFailed) as unknown:
                await client.command("booking.delete_everything", {})
            status, _ = await client.command("patients.list")
    assert (unknown.value.code, unknown.value.status) == ("unknown_command", 404) and status == 200


async def test_a_command_with_a_malformed_body_is_answered_with_422_and_what_is_wrong(server: Server) -> None:
    with trio.fail_after(15):
        async with connect(server.base, await server.token("patient1")) as client:
            with pytest.raises(CallFailed) as invalid:
                await client.command("booking.create", {"patient_id": 42})
            with pytest.raises(CallFailed) as missing:
                await client.command("booking.create")
    assert (invalid.value.code, invalid.value.status) == ("invalid", 422) and "patient_id" in invalid.value.message
    assert (missing.value.code, missing.value.status) == ("bad_request", 400)


async def test_a_connection_that_never_authenticates_is_closed_with_4001(server_factory) -> None:  # type: ignore[no-untyped-def]
    import carehub.http.gateway.connection as ws_module

    ws_module.AUTH_TIMEOUT, saved = 0.5, ws_module.AUTH_TIMEOUT
    try:
        async with server_factory() as srv:
            with trio.fail_after(15):
                async with open_websocket_url(ws_url(srv.base), subprotocols=["carehub.v1.json"]) as ws:
                    with pytest.raises(ConnectionClosed) as closed:
                        while True:
                            await ws.get_message()
                    assert closed.value.reason.code == 4001
    finally:
        ws_module.AUTH_TIMEOUT = saved


@asynccontextmanager
async def silent_hall_subscriber(base: str, token: str, device: str) -> AsyncIterator[WebSocketConnection]:
    """A phone that subscribes to the hall's topic, reads its welcome and then nothing more."""
    async with open_websocket_url(ws_url(base), subprotocols=["carehub.v1.json"], message_queue_size=0) as ws:
        await ws.send_message(orjson.dumps({"op": "auth", "token": token, "device": device}).decode())
        await ws.send_message('{"op": "subscribe", "topic": "broadcast/hall"}')
        await ws.get_message()  # welcome
        yield ws


async def test_a_consumer_that_stops_reading_is_disconnected_with_4008_and_resumes_later(server_factory) -> None:  # type: ignore[no-untyped-def]
    async with server_factory(ws_send_buffer=8, ws_stuck_seconds=0.5) as srv:
        sub_token, admin_token = await srv.token("patient4"), await srv.token("admin")
        with trio.fail_after(30):
            async with silent_hall_subscriber(srv.base, sub_token, "stuck") as ws:
                async with connect(srv.base, admin_token) as admin:
                    big = {"text": "叫号" * 8_000}
                    for _ in range(400):
                        await admin.send(
                            {"op": "publish", "topic": "broadcast/hall", "type": "call", "body": big, "critical": True}
                        )
                        if srv.app.services.gateway.stats.kicked_slow:
                            break
                        await trio.sleep(0.01)
                assert srv.app.services.gateway.stats.kicked_slow == 1
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        await ws.get_message()
                assert closed.value.reason.code == 4008
            async with connect(srv.base, sub_token, device="stuck") as again:
                assert again.welcome is not None


async def test_heartbeats_keep_a_live_client_connected_and_a_silent_one_is_closed_with_4002(server_factory) -> None:  # type: ignore[no-untyped-def]
    async with server_factory(ws_heartbeat_seconds=0.3, ws_idle_timeout_seconds=1.0) as srv:
        token = await srv.token("patient1")
        with trio.fail_after(20):
            async with connect(srv.base, token, device="alive") as alive, connect(
                srv.base, token, device="silent"
            ) as silent:
                silent.auto_pong = False
                await silent.closed.wait()
                with pytest.raises(ConnectionClosed) as closed:
                    await silent.ws.get_message()
                assert closed.value.reason.code == 4002
                assert not alive.closed.is_set()


async def test_a_client_that_sends_now_and_then_stays_past_its_first_idle_deadline(server_factory) -> None:  # type: ignore[no-untyped-def]
    # no server pings; the client's own frames are what keeps it. A frame that leaves more than half the idle
    # timeout on the clock does not move the timer, so after a frame 0.3 s in and a pause of 0.9 s the timer
    # fires before the next frame and must wait on from the last one
    async with server_factory(ws_heartbeat_seconds=60.0, ws_idle_timeout_seconds=1.0) as srv:
        token = await srv.token("patient1")
        with trio.fail_after(20):
            async with connect(srv.base, token, device="chatty") as chatty:
                for pause in (0.3, 0.9) * 3:  # 3.6 s: past the first deadline three times over
                    await trio.sleep(pause)
                    await chatty.send({"op": "ping", "t": 1})
                assert not chatty.closed.is_set()
                started = trio.current_time()
                await chatty.closed.wait()  # then silent: closed one timeout after its last frame
                assert 0.5 <= trio.current_time() - started <= 2.0
                with pytest.raises(ConnectionClosed) as closed:
                    await chatty.ws.get_message()
                assert closed.value.reason.code == 4002


async def test_a_restart_tells_each_client_a_different_time_to_come_back(server: Server) -> None:
    token = await server.token("patient1")
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            clients = []

            async def hold(i: int) -> None:
                async with connect(server.base, token, device=f"d{i}") as client:
                    clients.append(client)
                    await client.closed.wait()

            for i in range(8):
                nursery.start_soon(hold, i)
            while len(clients) < 8:
                await trio.sleep(0.01)
            await server.app.services.gateway.drain()
    waits = [c.bye["reconnect_after_ms"] for c in clients if c.bye is not None]
    assert len(waits) == 8
    assert all(500 <= w <= 15000 for w in waits)
    assert len(set(waits)) > 1, "jittered, so a restart does not cause a reconnect storm"


async def test_chat_text_is_encrypted_at_rest_and_still_reads_back_on_resume(server: Server) -> None:
    token = await server.token("patient1")
    address = chat(await server.account_id("patient1"), await server.account_id("doctor1"))
    with trio.fail_after(20):
        async with connect(server.base, token) as client:
            await client.call(address, "PostMessage", {"text": "我对青霉素过敏"})
        stored = await server.app.services.db.fetch("SELECT body FROM deliveries WHERE type = 'chat.message'")
        async with connect(server.base, token, device="other", resume_after=0) as again:
            frame = await again.next_delivery()
    assert stored and all(r["body"].startswith("sm4gcm:") and "青霉素" not in r["body"] for r in stored)
    assert frame["body"]["text"] == "我对青霉素过敏"


async def test_a_consumer_that_stops_reading_shows_in_metrics_as_a_full_socket_until_it_is_closed(
    server_factory,  # type: ignore[no-untyped-def]
) -> None:
    async with server_factory(ws_send_buffer=8, ws_stuck_seconds=3) as srv:
        sub_token, admin_token = await srv.token("patient4"), await srv.token("admin")

        async def sockets_full() -> float:
            async with srv.http() as http:
                text = (await http.get("/metrics")).text
            return float(next(line.split()[1] for line in text.splitlines()
                              if line.startswith("carehub_ws_sockets_full ")))

        with trio.fail_after(30):
            assert await sockets_full() == 0
            async with silent_hall_subscriber(srv.base, sub_token, "slow"):
                async with connect(srv.base, admin_token) as admin:
                    big = {"text": "叫号" * 8_000}
                    while srv.app.services.gateway.flusher.full == 0:
                        await admin.send({"op": "publish", "topic": "broadcast/hall", "type": "call", "body": big})
                        await trio.sleep(0.01)
                    assert await sockets_full() == 1
                    while not srv.app.services.gateway.stats.kicked_slow:  # the stuck rule closes it (4008)
                        await admin.send({"op": "publish", "topic": "broadcast/hall", "type": "call", "body": big,
                                          "critical": True})
                        await trio.sleep(0.05)


            async def none_full() -> bool:
                return await sockets_full() == 0

            await eventually(none_full)


async def test_binary_data_published_over_msgpack_is_dropped_for_json_subscribers_and_the_hub_keeps_serving(
    server: Server,
) -> None:
    admin_token, patient_token = await server.token("admin"), await server.token("patient1")
    with trio.fail_after(20):
        async with connect(server.base, patient_token, device="hall") as subscriber, connect(
            server.base, admin_token, codec="msgpack"
        ) as admin:
            await subscriber.subscribe("broadcast/hall")
            while await admin.publish("broadcast/hall", "probe", {}) == 0:
                await trio.sleep(0.01)  # until the subscription is in place
            while (await subscriber.next_event()).get("type") != "probe":
                pass
            # JSON has no bytes: this event cannot be written to the JSON subscriber
            assert await admin.publish("broadcast/hall", "raw", {"data": b"\x00\x01"}) == 1
            assert await admin.publish("broadcast/hall", "call", {"ticket": "A012"}) == 1
            event = await subscriber.next_event()
            while "type" not in event:  # not a topic event (a ping, say)
                event = await subscriber.next_event()
            assert (event["type"], event["body"]) == ("call", {"ticket": "A012"})
            async with server.http() as http:
                assert (await http.get("/healthz")).status_code == 200


def _sql(dsn: str, statement: str) -> None:
    """Run one statement on the test's database from another thread (its own asyncio loop)."""

    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


async def test_a_storage_failure_while_connecting_closes_that_connection_with_1011_and_the_hub_keeps_serving(
    server: Server, database_url: str,
) -> None:
    token = await server.token("patient1")
    async with connect(server.base, token, device="before"):
        pass  # the token check is cached now; what fails next is reading the delivery stream
    await trio.to_thread.run_sync(_sql, database_url, "ALTER TABLE delivery_streams RENAME TO delivery_streams_gone")
    try:
        with trio.fail_after(15):
            async with open_websocket_url(ws_url(server.base), subprotocols=["carehub.v1.json"]) as ws:
                await ws.send_message(orjson.dumps({"op": "auth", "token": token, "device": "during"}).decode())
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        await ws.get_message()
        assert closed.value.reason.code == 1011
    finally:
        await trio.to_thread.run_sync(
            _sql, database_url, "ALTER TABLE delivery_streams_gone RENAME TO delivery_streams"
        )
    with trio.fail_after(15):
        async with connect(server.base, token, device="after") as client:
            assert client.welcome is not None


async def signed_in_socket(server: Server, ws: WebSocketConnection) -> None:
    await ws.send_message(orjson.dumps({"op": "auth", "token": await server.token("patient3"),
                                        "device": "poller"}).decode())
    assert (await recv_json(ws))["op"] == "welcome"


async def test_frames_after_sign_in_are_answered_in_order_around_the_ones_that_wait(server: Server) -> None:
    # signed in, the read poller runs most frames; a resume (it reads the database) and an auth go to the
    # connection's own task, and what was sent after them waits for them
    frames = [{"op": "ping", "t": 1}, {"op": "resume"}, {"op": "ping", "t": 2}, {"op": "auth", "token": "again"},
              {"op": "ping", "t": 3}]
    with trio.fail_after(15):
        async with open_websocket_url(ws_url(server.base), subprotocols=["carehub.v1.json"]) as ws:
            await signed_in_socket(server, ws)
            for frame in frames:
                await ws.send_message(orjson.dumps(frame).decode())
            answers = []
            while len(answers) < 4:
                answer = await recv_json(ws)
                if answer["op"] in ("pong", "error"):
                    answers.append(answer.get("t") or answer["code"])
    assert answers == [1, 2, "already_authenticated", 3]


async def test_too_many_bad_frames_after_sign_in_close_the_connection_with_1008(server: Server) -> None:
    with trio.fail_after(15):
        async with open_websocket_url(ws_url(server.base), subprotocols=["carehub.v1.json"]) as ws:
            await signed_in_socket(server, ws)
            for _ in range(25):
                await ws.send_message('{"op": "teleport"}')
            errors = 0
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    if (await recv_json(ws))["op"] == "error":
                        errors += 1
    assert closed.value.reason.code == 1008
    assert errors == 20


async def test_metrics_count_the_reads_done_for_signed_in_connections(server: Server) -> None:
    async def polled() -> float:
        async with server.http() as http:
            text = (await http.get("/metrics")).text
        return float(next(line.split()[1] for line in text.splitlines()
                          if line.startswith("carehub_ws_reads_polled_total ")))

    before = await polled()
    with trio.fail_after(15):
        async with connect(server.base, await server.token("patient3")) as client:
            for _ in range(3):
                status, _ = await client.command("patients.list")
                assert status == 200
    assert await polled() >= before + 3


def _hold_lock(dsn: str, table: str, seconds: float, locked: trio.Event, token: trio.lowlevel.TrioToken) -> None:
    """Hold an exclusive lock on ``table`` for ``seconds`` from another thread: reads of it wait meanwhile."""

    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            async with conn.transaction():
                await conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
                token.run_sync_soon(locked.set)
                await asyncio.sleep(seconds)
        finally:
            await conn.close()

    asyncio.run(run())


async def test_the_auth_deadline_does_not_run_while_the_hub_checks_the_token_and_reads_the_stream(
    server_factory, database_url: str,  # type: ignore[no-untyped-def]
) -> None:
    # a reconnect storm: the client sent auth at once, the hub took longer than the auth timeout to answer.
    # That is the hub's time, not the client's: it gets its welcome, not 4001 (nor 4002, "idle", once signed in)
    import carehub.http.gateway.connection as ws_module

    ws_module.AUTH_TIMEOUT, saved = 0.5, ws_module.AUTH_TIMEOUT
    try:
        async with server_factory() as srv:
            token = await srv.token("patient1")
            locked = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(functools.partial(
                    trio.to_thread.run_sync, _hold_lock, database_url, "delivery_streams", 1.5, locked,
                    trio.lowlevel.current_trio_token()))
                await locked.wait()
                with trio.fail_after(15):
                    async with open_websocket_url(ws_url(srv.base), subprotocols=["carehub.v1.json"]) as ws:
                        await ws.send_message(orjson.dumps({"op": "auth", "token": token}).decode())
                        assert (await recv_json(ws))["op"] == "welcome"
                        await ws.send_message('{"op": "ping", "t": 2}')
                        assert (await recv_json(ws))["op"] == "pong"
    finally:
        ws_module.AUTH_TIMEOUT = saved


async def test_pings_before_auth_do_not_extend_the_auth_deadline(server_factory) -> None:  # type: ignore[no-untyped-def]
    # docs/protocol.md: 4001 is "no auth within 10 s" of opening, however chatty the client is meanwhile
    import carehub.http.gateway.connection as ws_module

    ws_module.AUTH_TIMEOUT, saved = 0.6, ws_module.AUTH_TIMEOUT
    try:
        async with server_factory() as srv:
            with trio.fail_after(15):
                async with open_websocket_url(ws_url(srv.base), subprotocols=["carehub.v1.json"]) as ws:
                    opened = trio.current_time()
                    with pytest.raises(ConnectionClosed) as closed:
                        while True:
                            await ws.send_message('{"op": "ping"}')
                            await ws.get_message()  # its pong (or the close)
                            await trio.sleep(0.1)
                    assert closed.value.reason.code == 4001
                    assert trio.current_time() - opened < 3
    finally:
        ws_module.AUTH_TIMEOUT = saved


async def test_an_ack_past_the_last_message_sent_is_refused_and_the_cursor_stays_at_the_last_sent(
    server: Server,
) -> None:
    p_token, doctor_token = await server.token("patient3"), await server.token("doctor2")
    address = chat(await server.account_id("patient3"), await server.account_id("doctor2"))
    with trio.fail_after(30):
        async with connect(server.base, doctor_token) as dc:
            await dc.call(address, "PostMessage", {"text": "only one"})
        async with open_websocket_url(ws_url(server.base), subprotocols=["carehub.v1.json"]) as ws:
            await ws.send_message(orjson.dumps({"op": "auth", "token": p_token, "device": "ahead",
                                                "resume_after": 0}).decode())
            assert (await recv_json(ws))["op"] == "welcome"
            delivered = await recv_json(ws)
            assert delivered["op"] == "deliver"
            last = int(delivered["seq"])  # type: ignore[call-overload]
            await ws.send_message(orjson.dumps({"op": "ack", "seq": last + 1000}).decode())
            refused = await recv_json(ws)
            assert refused["op"] == "error" and refused["code"] == "ack_beyond_stream", refused
            assert refused["ref"] == last + 1000
        async with connect(server.base, doctor_token) as dc:
            await dc.call(address, "PostMessage", {"text": "after the ack"})
        async with connect(server.base, p_token, device="ahead") as pc:
            # the cursor stayed at the last message sent, so the next one is not skipped
            assert (await pc.next_delivery())["body"]["text"] == "after the ack"
