"""Random and malformed input at /ws and at every REST route: no 5xx, no crash, hub keeps serving."""

from __future__ import annotations

import json
from typing import Any

import orjson
import trio
from hypothesis import example, given, settings
from hypothesis import strategies as st
from trio_websocket import ConnectionClosed, open_websocket_url

from carehub.bots.client import connect, ws_url

from ..servers import Server
from .test_route_roles import LOGINS, POLICY, concrete

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
OPS = st.sampled_from(
    ["auth", "call", "command", "ack", "resume", "subscribe", "unsubscribe", "publish", "ping", "pong", "x"]
)
COMMANDS = st.sampled_from(["booking.create", "patients.list"])
frames = st.one_of(
    st.fixed_dictionaries({"op": OPS}, optional={
        "id": json_values, "to": st.text(max_size=40) | json_values, "type": st.text(max_size=20) | json_values,
        "body": json_values, "seq": json_values, "after": json_values, "topic": json_values, "token": json_values,
        "device": json_values, "resume_after": json_values, "critical": json_values, "coalesce": json_values,
        "name": COMMANDS | json_values,
    }).map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=200),
    st.binary(max_size=200),
)


FUZZ = settings(max_examples=40, deadline=None, database=None)


async def send_frames(server: Server, token: str, batch: list[Any], authenticate: bool) -> None:
    async with open_websocket_url(ws_url(server.base), subprotocols=["carehub.v1.json"]) as ws:
        if authenticate:
            await ws.send_message(orjson.dumps({"op": "auth", "token": token}).decode())
        try:
            for frame in batch:
                await ws.send_message(frame)
            await ws.send_message('{"op": "ping", "t": "end"}')
            while True:  # the connection answers every frame in order, ending with our pong
                reply = orjson.loads(await ws.get_message())
                if reply.get("op") == "pong" and reply.get("t") == "end":
                    break
        except ConnectionClosed as closed:
            assert closed.reason.code in (1008, 1009, 4001), closed.reason


async def test_random_frames_get_answers_not_crashes(server: Server) -> None:
    token = await server.token("patient1")

    # hypothesis drives from a worker thread; each example runs back in the test's Trio loop
    @FUZZ
    @given(batch=st.lists(frames, min_size=1, max_size=15), authenticate=st.booleans())
    def check(batch: list[Any], authenticate: bool) -> None:
        trio.from_thread.run(send_frames, server, token, batch, authenticate)

    await trio.to_thread.run_sync(check)
    async with connect(server.base, token) as client:
        assert client.welcome is not None
    assert server.app.services.hub.crashes_total == 0


def route_bodies() -> st.SearchStrategy[tuple[str, str, Any]]:
    routes = sorted(POLICY)
    return st.tuples(st.sampled_from(routes), json_values | st.binary(max_size=100)).map(
        lambda pair: (pair[0][0], pair[0][1], pair[1])
    )


async def send_body(server: Server, method: str, path: str, body: Any) -> None:
    allowed = POLICY[(method, path)]
    role = next((r for r in ("admin", "ops", "patient") if r in allowed), None)
    token = await server.token(LOGINS[role]) if role else None
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    async with server.http(token) as http:
        response = await http.request(method, concrete(path), content=content, headers=headers)
    assert response.status_code < 500, (method, path, body, response.text)
    if response.status_code >= 400 and not path.startswith("/ops"):
        assert response.json()["error"]["message"], (method, path)


async def test_random_bodies_at_every_route_never_get_a_5xx(server: Server) -> None:
    @FUZZ
    @given(case=route_bodies())
    def check(case: tuple[str, str, Any]) -> None:
        method, path, body = case
        if path != "/api/v1/auth/logout":  # would end the session the next cases use
            trio.from_thread.run(send_body, server, method, path, body)

    await trio.to_thread.run_sync(check)


async def test_random_bodies_at_every_websocket_command_never_get_a_5xx(server: Server) -> None:
    names = sorted(spec.command for spec in server.app.router.specs if spec.command)
    token = await server.token("patient1")

    async def send_command(name: str, body: Any) -> None:
        # raw JSON text: the body may hold what our own client would not encode (integers over 64 bits)
        frame = json.dumps({"op": "command", "id": 1, "name": name, "body": body})
        async with open_websocket_url(ws_url(server.base), subprotocols=["carehub.v1.json"]) as ws:
            await ws.send_message(orjson.dumps({"op": "auth", "token": token}).decode())
            await ws.send_message(frame)
            while (reply := orjson.loads(await ws.get_message())).get("op") not in ("reply", "error"):
                pass
        if reply["op"] == "error":  # a frame the gateway cannot read (e.g. an integer over 64 bits)
            assert reply["code"] == "bad_frame" and reply["message"], (name, body, reply)
        elif not reply["ok"]:
            error = reply["error"]
            assert error["status"] < 500 and error["message"], (name, body, error)

    @FUZZ
    @given(name=st.sampled_from(names), body=json_values)
    @example(name="booking.create", body={"patient_id": "p", "doctor_id": "d", "day": "2030-01-01",
                                          "period": "am", "slot_no": -(2**63) - 1})
    def check(name: str, body: Any) -> None:
        trio.from_thread.run(send_command, name, body)

    await trio.to_thread.run_sync(check)


async def test_a_nul_character_in_a_body_path_or_query_is_a_clear_4xx(server: Server) -> None:
    """PostgreSQL cannot store NUL in text: a path or query value is refused at once, a body value by storage."""
    token = await server.token("patient1")
    async with server.http(token) as http:
        body = await http.post("/api/v1/me/consents", content=b'{"patient_id": "p\\u0000x", "requester": "a",'
                               b' "grant": true}', headers={"Content-Type": "application/json"})
        path = await http.get("/api/v1/me/bookings/a%00b")
        query = await http.get("/api/v1/sessions?doctor_name=a%00b")
    assert body.status_code == 422 and "不允许的字符" in body.json()["error"]["message"], body.text
    assert path.status_code == 400 and "NUL" in path.json()["error"]["message"], path.text
    assert query.status_code == 400 and "NUL" in query.json()["error"]["message"], query.text
