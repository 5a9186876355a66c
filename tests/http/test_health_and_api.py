"""Health, readiness, metrics, OpenAPI and the JSON error contract of the REST API."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import msgspec
import pytest
import trio
from trio_websocket import ConnectionClosed

from carehub.bots.client import connect
from carehub.storage.embedded import EmbeddedPostgres

from .conftest import Server, eventually, run_server


async def test_healthz_answers_ok(server: Server) -> None:
    async with server.http() as http:
        response = await http.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_readyz_reports_the_applied_schema_version(server: Server) -> None:
    async with server.http() as http:
        response = await http.get("/readyz")
    assert response.status_code == 200
    assert response.json()["schema_version"] >= 1


async def test_readyz_says_503_while_postgresql_is_down_and_recovers_when_it_is_back(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg")
    dsn = await trio.to_thread.run_sync(pg.start)
    try:
        with trio.fail_after(60):
            async with run_server(dsn) as srv, srv.http() as http:
                assert (await http.get("/readyz")).status_code == 200
                await trio.to_thread.run_sync(pg.stop)
                down = await http.get("/readyz")
                assert down.status_code == 503
                assert down.json()["error"]["code"] == "database_unavailable"
                assert "数据库不可用" in down.json()["error"]["message"]
                assert (await http.get("/healthz")).status_code == 200, "the process itself stays up"
                await trio.to_thread.run_sync(pg.start)

                async def ready() -> bool:
                    return (await http.get("/readyz")).status_code == 200

                await eventually(ready, timeout=30)
    finally:
        await trio.to_thread.run_sync(pg.stop)


async def test_metrics_expose_actors_mailboxes_messages_connections_reminders_effects_and_errors(
    server: Server,
) -> None:
    token = await server.token("patient1")
    async with connect(server.base, token), server.http() as http:
        text = (await http.get("/metrics")).text
    for name in (
        'carehub_actors{kind="conversation"}',
        "carehub_mailbox_depth",
        "carehub_messages_total",
        "carehub_messages_per_second",
        "carehub_connections 1.0",
        "carehub_reminders_due",
        "carehub_effects_done_total",
        "carehub_effects_deferred_total",
        "carehub_errors",
        "process_resident_memory_bytes",
    ):
        assert name in text, name


async def test_openapi_describes_every_rest_route(server: Server) -> None:
    async with server.http() as http:
        doc = (await http.get("/openapi.json")).json()
    quart_app = server.app.asgi.app
    routes = {
        (method.lower(), re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule))
        for rule in quart_app.url_map.iter_rules()
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    described = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert routes == described
    assert doc["paths"]["/api/v1/auth/login"]["post"]["requestBody"]["required"] is True
    # every body and answer type has one name (two Structs of one name get module-qualified components)
    assert [name for name in doc["components"]["schemas"] if "." in name] == []
    # a route that creates documents its 201 with the answer's schema (not an empty 200)
    booked = doc["paths"]["/api/v1/me/bookings"]["post"]["responses"]
    assert "200" not in booked and booked["201"]["content"]["application/json"]["schema"]


async def test_every_declared_public_answer_matches_its_openapi_schema(server: Server) -> None:
    """A route that declares ``response=`` documents its real answer: the public GETs answer exactly that shape."""
    specs = [s for s in server.app.router.specs if s.response is not None]
    assert specs, "no route declares its answer"
    async with server.http() as http:
        doc = (await http.get("/openapi.json")).json()
        for spec in specs:
            schema = doc["paths"][spec.openapi_path][spec.method.lower()]["responses"][str(spec.status)]["content"]
            assert schema[spec.content_type]["schema"], spec.path
            if spec.method == "GET" and spec.permission is None and not spec.path_params:
                answer = await http.get(spec.path)
                assert answer.status_code == 200, spec.path
                msgspec.json.decode(answer.content, type=spec.response)  # raises if the shape differs
    # a patient's own GETs too (after the patient has a stream, bookings and family members to show)
    async with server.http(await server.token("patient1")) as http:
        for spec in specs:
            if spec.method == "GET" and spec.permission == "account.self" and not spec.path_params:
                answer = await http.get(spec.path)
                assert answer.status_code == 200, (spec.path, answer.text)
                msgspec.json.decode(answer.content, type=spec.response)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/api/v1/nowhere", None, 404, "not_found"),
        ("POST", "/api/v1/auth/login", b"{oops", 400, "bad_request"),
        ("POST", "/api/v1/auth/login", b'{"login": 1, "password": "x"}', 422, "invalid"),
        ("POST", "/api/v1/auth/login", b'{"login": "ghost", "password": "whatever1"}', 401, "auth_failed"),
        ("GET", "/api/v1/me", None, 401, "unauthenticated"),
        ("DELETE", "/healthz", None, 405, "method_not_allowed"),
    ],
)
async def test_bad_requests_get_a_json_error_that_says_what_was_wrong(
    server: Server, method: str, path: str, body: bytes | None, status: int, code: str
) -> None:
    async with server.http() as http:
        response = await http.request(method, path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


async def test_a_patient_is_refused_the_ops_api_with_403(server: Server) -> None:
    async with server.http(await server.token("patient1")) as http:
        response = await http.get("/api/v1/ops/snapshot")
    assert response.status_code == 403 and "ops.view" in response.json()["error"]["message"]


async def test_signing_out_closes_that_sessions_websockets_with_4003(server: Server) -> None:
    token = await server.token("patient2")
    with trio.fail_after(15):
        async with connect(server.base, token) as client:
            async with server.http(token) as http:
                assert (await http.post("/api/v1/auth/logout")).status_code == 200
                assert (await http.get("/api/v1/me")).status_code == 401
            await client.closed.wait()
            with pytest.raises(ConnectionClosed) as closed:
                await client.ws.get_message()
            assert closed.value.reason.code == 4003


async def test_an_http_call_is_answered_after_commit(server: Server) -> None:
    token = await server.token("patient1")
    me, doctor = await server.account_id("patient1"), await server.account_id("doctor1")
    address = "conversation/" + "~".join(sorted([me, doctor]))
    async with server.http(token) as http:
        first = await http.post("/api/v1/call", json={"to": address, "type": "PostMessage", "body": {"text": "在吗"}})
        stream = await http.get("/api/v1/me/stream", params={"after": 0})
    assert first.status_code == 200 and first.json()["result"]["n"] == 1
    assert [item["body"]["text"] for item in stream.json()["items"]] == ["在吗"]


async def test_rest_routes_answer_503_with_retry_after_while_postgresql_is_down_and_recover(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """Not a 500 and a traceback per request: a retryable 503 that says to come back (issue 16)."""
    pg = EmbeddedPostgres(tmp_path / "pg")
    dsn = await trio.to_thread.run_sync(pg.start)
    try:
        with trio.fail_after(90):
            async with run_server(dsn) as srv, srv.http() as http:
                assert (await http.get("/api/v1/departments")).status_code == 200
                await trio.to_thread.run_sync(pg.stop)
                caplog.clear()
                answers = [await http.get("/api/v1/departments") for _ in range(20)]
                for down in answers:
                    assert down.status_code == 503, down.text
                    assert down.headers["Retry-After"].isdigit()
                    assert down.json()["error"]["code"] == "storage_unavailable"
                    assert down.json()["error"]["retryable"] is True
                    assert "数据库暂时不可用" in down.json()["error"]["message"]
                tracebacks = [r for r in caplog.records if r.exc_info]
                assert not tracebacks, "a dependency that is down is not an internal error"
                await trio.to_thread.run_sync(pg.start)

                async def served() -> bool:
                    return (await http.get("/api/v1/departments")).status_code == 200

                await eventually(served, timeout=30)
    finally:
        await trio.to_thread.run_sync(pg.stop)


@pytest.mark.parametrize("size", [20, 70_000, 600_000, 1024 * 1024 + 10, 3 * 1024 * 1024])
async def test_requests_refused_before_their_body_is_read_leave_the_kept_alive_connection_usable(
    server: Server, size: int,
) -> None:
    # one client, one kept-alive connection: every refusal is answered (401 before the body is read, or
    # 413 for a body over the limit), and so is the next request on that connection
    token = await server.token("patient1")
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    body = b'{"patient_id": "' + b"x" * size + b'"}'
    async with httpx.AsyncClient(base_url=server.base, limits=limits, timeout=5) as http:
        with trio.fail_after(60):
            for i in range(100 if size < 1024 * 1024 else 10):
                garbled = i % 2 == 0
                response = await http.post("/api/v1/me/bookings", content=body, headers={
                    "Content-Type": "application/json", "Authorization": f"Bearer {'garbled' if garbled else token}"})
                if garbled:
                    assert response.status_code == 401, i
                else:
                    assert response.status_code in ((413,) if size > 1024 * 1024 else (422, 404, 400, 403)), i
            assert (await http.get("/healthz")).status_code == 200
