"""The publish API (MSG-1): the hospital's systems post notices over signed HTTP to a running hub.

The demo partner ``partner1`` has the fixed demo key and a rule allowing every kind (carehub/demo.py);
other partners are made here through the admin API, as a hospital's admin would.
"""

from __future__ import annotations

import re
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import orjson
import pytest
import trio

from carehub.bots.client import connect
from carehub.demo import DEMO_PARTNER_KEY_ID, DEMO_PARTNER_KEY_SECRET
from carehub.http.rest.open_messages import BatchView, MessageStatusView, PublishedView, RulesView, RuleView
from carehub.identity.partners import sign

from ..identity.test_sign_in import hospital
from ..servers import Server, eventually

MESSAGES = "/api/v1/open/messages"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "open-api.md"
DEMO_KEY = (DEMO_PARTNER_KEY_ID, DEMO_PARTNER_KEY_SECRET)


def signed(key: tuple[str, str], method: str, path: str, body: bytes = b"") -> dict[str, str]:
    ts, nonce = str(int(time.time())), secrets.token_hex(12)
    return {"X-CareHub-Key": key[0], "X-CareHub-Timestamp": ts, "X-CareHub-Nonce": nonce,
            "X-CareHub-Signature": sign(key[1], method, path, ts, nonce, body), "Content-Type": "application/json"}


async def post(server: Server, body: Any, key: tuple[str, str] = DEMO_KEY, path: str = MESSAGES) -> httpx.Response:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    async with server.http() as http:
        return await http.post(path, content=raw, headers=signed(key, "POST", path, raw))


async def status(server: Server, message_id: str, key: tuple[str, str] = DEMO_KEY) -> httpx.Response:
    path = f"{MESSAGES}/{message_id}"
    async with server.http() as http:
        return await http.get(path, headers=signed(key, "GET", path))


def notice(to: dict[str, str], key: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"kind": "hospital.notice", "to": to, "values": {"title": "停车场施工", "content": "本周六东门停车场施工。"},
            "idempotency_key": key or f"t-{secrets.token_hex(6)}", **extra}


def code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


async def new_partner(server: Server, login: str, operations: tuple[str, ...] = ("messages.publish",),
                      rule: dict[str, Any] | None = None) -> tuple[str, tuple[str, str]]:
    """A partner account made by the admin, with a key (and a publish rule when given)."""
    async with server.http(await server.token("admin")) as http:
        made = await http.post("/api/v1/admin/accounts", json={"accounts": [
            {"login": login, "display_name": f"{login} 系统", "roles": ["partner"]}]})
        assert made.status_code == 201, made.text
        partner_id = made.json()["ids"][0]
        issued = await http.post(f"/api/v1/admin/partners/{partner_id}/keys", json={"operations": list(operations)})
        assert issued.status_code == 201, issued.text
        if rule is not None:
            answer = await http.put(f"/api/v1/admin/publish-rules/{partner_id}", json=rule)
            assert answer.status_code == 200, answer.text
    return partner_id, (issued.json()["key_id"], issued.json()["secret"])


async def patient_id(server: Server, login: str) -> str:
    async with server.http(await server.token(login)) as http:
        people = (await http.get("/api/v1/me/patients")).json()
    items = people["patients"] if isinstance(people, dict) else people
    return str(next(p["id"] for p in items if p["relation"] == "self"))


# ---- publishing and where it shows -------------------------------------------------------------


async def test_a_published_notice_is_in_the_patients_inbox_and_on_their_stream(server: Server) -> None:
    patient = await server.account_id("patient1")
    with trio.fail_after(30):
        async with connect(server.base, await server.token("patient1")) as ws:
            answer = await post(server, notice({"account_id": patient}))
            assert answer.status_code == 202, answer.text
            published = msgspec.json.decode(answer.content, type=PublishedView)
            assert published.duplicate is False and published.message_id.startswith("p-")
            delivery = await ws.next_delivery()
            while delivery["type"] != "notice":
                delivery = await ws.next_delivery()
    assert delivery["body"]["notice_id"] == published.message_id
    assert delivery["body"]["title"] == "停车场施工" and delivery["body"]["body"] == "本周六东门停车场施工。"
    (inbox,) = await server.notices("patient1", "hospital.notice")
    assert inbox["id"] == published.message_id and inbox["read"] is False


async def test_recipients_are_found_by_patient_id_and_by_phone(server: Server) -> None:
    by_patient = await post(server, notice({"patient_id": await patient_id(server, "patient2")}))
    by_phone = await post(server, notice({"phone": "+86 138-0013-8003"}))
    assert by_patient.status_code == 202 and by_phone.status_code == 202
    assert (await server.notices("patient2", "hospital.notice"))[0]["id"] == by_patient.json()["message_id"]
    assert (await server.notices("patient3", "hospital.notice"))[0]["id"] == by_phone.json()["message_id"]


async def test_a_staff_kind_reaches_a_doctor(server: Server) -> None:
    answer = await post(server, {"kind": "work.item", "to": {"account_id": await server.account_id("doctor1")},
                                 "values": {"doctor": "李建国", "title": "病历待签", "content": "3 份病历待签名"},
                                 "idempotency_key": "his-work-1"})
    assert answer.status_code == 202, answer.text
    (item,) = await server.notices("doctor1", "work.item")
    assert item["body"] == "李建国医生，3 份病历待签名"


# ---- signatures --------------------------------------------------------------------------------


async def test_unsigned_badly_signed_and_not_permitted_requests_are_refused(server: Server) -> None:
    body = orjson.dumps(notice({"phone": "13800138001"}))
    async with server.http() as http:
        unsigned = await http.post(MESSAGES, content=body, headers={"Content-Type": "application/json"})
        forged = await http.post(MESSAGES, content=body, headers=signed((DEMO_PARTNER_KEY_ID, "wrong"), "POST",
                                                                         MESSAGES, body))
        unknown = await http.post(MESSAGES, content=body, headers=signed(("pk_nobody", "x"), "POST", MESSAGES, body))
    _, reader = await new_partner(server, "lis-reader", operations=("directory.read",),
                                  rule={"kinds": ["*"], "audiences": ["patient"], "per_minute": 10})
    wrong_op = await post(server, body, key=reader)
    assert (unsigned.status_code, code(unsigned)) == (401, "unsigned")
    assert (forged.status_code, code(forged)) == (401, "bad_signature")
    assert (unknown.status_code, code(unknown)) == (401, "unknown_key")
    assert (wrong_op.status_code, code(wrong_op)) == (403, "operation_not_allowed")
    async with server.http(await server.token("patient1")) as http:  # a bearer token is no signature
        bearer = await http.post(MESSAGES, content=body, headers={"Content-Type": "application/json"})
    assert bearer.status_code == 401
    assert await server.notices("patient1", "hospital.notice", count=0) == []


# ---- idempotency -------------------------------------------------------------------------------


async def test_a_repeat_answers_the_first_answer_and_sends_nothing_twice(server: Server) -> None:
    message = notice({"phone": "13800138001"}, key="his-notice-0001")
    first = await post(server, message)
    again = await post(server, message)
    async with trio.open_nursery() as nursery:  # and two racing repeats
        for _ in range(3):
            nursery.start_soon(post, server, message)
    other = await post(server, {**message, "values": {"title": "别的", "content": "另一条"}})
    assert first.status_code == 202 and again.status_code == 202
    assert first.json()["duplicate"] is False and again.json() == {**first.json(), "duplicate": True}
    assert (other.status_code, code(other)) == (409, "idempotency_conflict")
    await trio.sleep(0.5)
    assert len(await server.notices("patient1", "hospital.notice")) == 1


async def test_racing_first_requests_with_one_key_post_one_notice(server: Server) -> None:
    message = notice({"phone": "13800138004"}, key="race-1")
    answers: list[httpx.Response] = []

    async def send() -> None:
        answers.append(await post(server, message))

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(send)
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["message_id"] for a in answers}) == 1
    assert sorted(a.json()["duplicate"] for a in answers) == [False, True, True, True]
    await trio.sleep(0.5)
    assert len(await server.notices("patient4", "hospital.notice")) == 1


# ---- permissions -------------------------------------------------------------------------------


async def test_a_partner_without_a_rule_may_publish_nothing(server: Server) -> None:
    _, key = await new_partner(server, "pacs-new")
    answer = await post(server, notice({"phone": "13800138001"}), key=key)
    assert (answer.status_code, code(answer)) == (403, "publish_not_allowed")
    assert "admin" in answer.json()["error"]["message"]


async def test_kinds_and_audiences_outside_the_rule_are_refused(server: Server) -> None:
    _, key = await new_partner(server, "lis-1", rule={"kinds": ["report.ready", "work.item"],
                                                      "audiences": ["patient"], "per_minute": 100})
    doctor = await server.account_id("doctor1")
    other_kind = await post(server, notice({"phone": "13800138001"}), key=key)
    staff = await post(server, {"kind": "work.item", "to": {"account_id": doctor}, "idempotency_key": "w-1",
                                "values": {"doctor": "李", "title": "t", "content": "c"}}, key=key)
    wrong = await post(server, {"kind": "report.ready", "to": {"account_id": doctor}, "idempotency_key": "r-1",
                                "values": {"report": "血常规"}}, key=key)
    allowed = await post(server, {"kind": "report.ready", "to": {"phone": "13800138001"}, "idempotency_key": "r-2",
                                  "values": {"patient": "张三", "report": "血常规", "department": "检验科"}}, key=key)
    assert (other_kind.status_code, code(other_kind)) == (403, "publish_not_allowed")
    assert (staff.status_code, code(staff)) == (403, "publish_not_allowed")
    assert "staff" in staff.json()["error"]["message"]
    assert (wrong.status_code, code(wrong)) == (422, "wrong_audience")
    assert allowed.status_code == 202, allowed.text
    (report,) = await server.notices("patient1", "report.ready")
    assert report["body"] == "张三，您的血常规报告已出，可在线查看或到检验科咨询。"


# ---- rate limits -------------------------------------------------------------------------------


async def test_over_the_per_minute_limit_is_429_with_retry_after(server: Server) -> None:
    _, key = await new_partner(server, "queue-1", rule={"kinds": ["*"], "audiences": ["patient"], "per_minute": 2})
    answers = [await post(server, notice({"phone": "13800138001"}, key=f"q-{n}"), key=key) for n in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 429]
    assert code(answers[2]) == "rate_limited" and 1 <= int(answers[2].headers["Retry-After"]) <= 30
    repeat = await post(server, notice({"phone": "13800138001"}, key="q-0"), key=key)  # a repeat costs nothing
    assert repeat.status_code == 202 and repeat.json()["duplicate"] is True
    batch = await post(server, {"messages": [notice({"phone": "13800138001"}, key=f"qb-{n}") for n in range(2)]},
                       key=key, path=f"{MESSAGES}/batch")
    assert batch.status_code == 429 and int(batch.headers["Retry-After"]) >= 1


# ---- batches -----------------------------------------------------------------------------------


async def test_a_batch_answers_each_message_in_order(server: Server) -> None:
    batch = {"messages": [notice({"phone": "13800138001"}), notice({"phone": "13900000000"}),
                          notice({"patient_id": await patient_id(server, "patient2")})]}
    answer = await post(server, batch, path=f"{MESSAGES}/batch")
    assert answer.status_code == 202, answer.text
    view = msgspec.json.decode(answer.content, type=BatchView)
    assert (view.accepted, view.failed) == (2, 1)
    ok1, bad, ok2 = view.results
    assert ok1.message_id and ok2.message_id and ok1.error is None and bad.message_id is None
    assert bad.error is not None and bad.error.code == "recipient_not_found"
    assert (await server.notices("patient1", "hospital.notice"))[0]["id"] == ok1.message_id
    assert (await server.notices("patient2", "hospital.notice"))[0]["id"] == ok2.message_id
    again = await post(server, batch, path=f"{MESSAGES}/batch")
    assert [r.get("duplicate") for r in again.json()["results"]] == [True, None, True]


async def test_a_batch_over_500_or_with_a_key_twice_is_refused_whole(server: Server) -> None:
    big = await post(server, {"messages": [notice({"phone": "13800138001"}) for _ in range(501)]},
                     path=f"{MESSAGES}/batch")
    twice = await post(server, {"messages": [notice({"phone": "13800138001"}, key="same")] * 2},
                       path=f"{MESSAGES}/batch")
    empty = await post(server, {"messages": []}, path=f"{MESSAGES}/batch")
    assert (big.status_code, code(big)) == (422, "too_many_messages")
    assert twice.status_code == 422 and empty.status_code == 422
    assert await server.notices("patient1", "hospital.notice", count=0) == []


# ---- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "status", "error"), [
    (b"{not json", 400, "bad_request"),
    (b"", 400, "bad_request"),
    ({"kind": "hospital.notice", "to": {"phone": "13800138001"}, "values": {"title": 1}, "idempotency_key": "k"},
     422, "invalid"),
    ({"kind": "no.such.kind", "to": {"phone": "13800138001"}, "values": {}, "idempotency_key": "k"},
     404, "unknown_notice_kind"),
    (notice({"phone": "13800138001", "account_id": "x"}), 422, "invalid"),
    (notice({}), 422, "invalid"),
    (notice({"phone": "12345"}), 422, "invalid"),
    (notice({"account_id": "nobody"}), 404, "recipient_not_found"),
    (notice({"phone": "13800138001"}, key="bad key!"), 422, "invalid"),
    (notice({"phone": "13800138001"}, key="k" * 81), 422, "invalid"),
    (notice({"phone": "13800138001"}, channels=["fax"]), 422, "invalid"),
    ({**notice({"phone": "13800138001"}), "values": {"colour": "red"}}, 422, "invalid"),
    ({**notice({"phone": "13800138001"}), "extra": 1}, 422, "invalid"),
    ({**notice({"phone": "13800138001"}), "values": {"title": "a\u0000b"}}, 422, "invalid"),
])
async def test_bad_input_is_a_clear_4xx(server: Server, body: Any, status: int, error: str) -> None:
    answer = await post(server, body)
    assert (answer.status_code, code(answer)) == (status, error), answer.text
    assert answer.json()["error"]["message"]


# ---- status ------------------------------------------------------------------------------------


async def test_the_status_shows_each_channel_and_only_to_the_publisher(server: Server) -> None:
    published = (await post(server, notice({"phone": "13800138001"}))).json()
    answer = await status(server, published["message_id"])
    assert answer.status_code == 200, answer.text
    view = msgspec.json.decode(answer.content, type=MessageStatusView)
    assert view.kind == "hospital.notice" and view.status == "in_app"  # no outside channel on this hub
    assert [(c.channel, c.status, c.read) for c in view.channels] == [("app", "delivered", False)]
    _, other = await new_partner(server, "his-other", rule={"kinds": ["*"], "audiences": ["patient"],
                                                            "per_minute": 10})
    theirs = await status(server, published["message_id"], key=other)
    nothing = await status(server, "p-0000")
    assert (theirs.status_code, code(theirs)) == (404, "notice_not_found")
    assert nothing.status_code == 404


async def test_the_status_shows_the_sms_sent_through_the_gateway(database_url: str) -> None:
    with trio.fail_after(60):
        async with hospital(database_url) as (server, gateway):
            published = (await post(server, notice({"phone": "13800138002"}, channels=["sms"]))).json()
            assert published["status"] == "sending"

            async def sent() -> bool:
                view = (await status(server, published["message_id"])).json()
                return any(c["channel"] == "sms" and c["status"] in ("sent", "delivered") for c in view["channels"])

            await eventually(sent)
            async with httpx.AsyncClient(base_url=gateway) as http:
                messages = (await http.get("/_sim/messages", params={"phone": "13800138002"})).json()["messages"]
            assert messages, "the SMS gateway simulator got no message"


# ---- admin rules -------------------------------------------------------------------------------


async def test_admins_list_and_set_publish_rules(server: Server) -> None:
    partner1 = await server.account_id("partner1")
    async with server.http(await server.token("admin")) as http:
        listed = await http.get("/api/v1/admin/publish-rules")
        view = msgspec.json.decode(listed.content, type=RulesView)
        demo = next(p for p in view.partners if p.login == "partner1")
        assert demo.rule is not None and demo.rule.kinds == ["*"] and demo.rule.audiences == ["patient", "staff"]
        assert {"report.ready", "critical.value"} <= {k.kind for k in view.kinds}
        put = await http.put(f"/api/v1/admin/publish-rules/{partner1}",
                             json={"kinds": ["report.ready"], "audiences": ["patient"], "per_minute": 60})
        rule = msgspec.json.decode(put.content, type=RuleView)
        assert rule.kinds == ["report.ready"] and rule.updated_by == await server.account_id("admin")
        bad = [
            await http.put(f"/api/v1/admin/publish-rules/{partner1}", json=body) for body in (
                {"kinds": ["no.such"], "audiences": ["patient"], "per_minute": 60},
                {"kinds": ["*"], "audiences": ["robots"], "per_minute": 60},
                {"kinds": ["*"], "audiences": ["patient"], "per_minute": 0},
                {"kinds": ["*"], "audiences": ["patient"], "per_minute": 100_001},
                {"kinds": "*", "audiences": ["patient"], "per_minute": 60},
            )
        ]
        not_partner = await http.put(f"/api/v1/admin/publish-rules/{await server.account_id('doctor1')}",
                                     json={"kinds": ["*"], "audiences": ["patient"], "per_minute": 60})
        audit = (await http.get("/api/v1/admin/audit", params={"action": "partner.publish_rule"})).json()
    assert [b.status_code for b in bad] == [422] * 5
    assert (not_partner.status_code, code(not_partner)) == (404, "not_found")
    assert "partner.publish_rule" in str(audit)
    refused = await post(server, notice({"phone": "13800138001"}))
    assert (refused.status_code, code(refused)) == (403, "publish_not_allowed")
    async with server.http(await server.token("doctor1")) as http:
        assert (await http.get("/api/v1/admin/publish-rules")).status_code == 403


async def test_the_openapi_document_shows_the_answers(server: Server) -> None:
    async with server.http() as http:
        doc = (await http.get("/openapi.json")).json()
    for path, method, answered in ((MESSAGES, "post", "202"), (f"{MESSAGES}/batch", "post", "202"),
                                   (MESSAGES + "/{message_id}", "get", "200"),
                                   ("/api/v1/admin/publish-rules", "get", "200")):
        schema = doc["paths"][path][method]["responses"][answered]["content"]["application/json"]["schema"]
        assert schema.get("$ref") or schema.get("properties"), (path, schema)


# ---- the docs' examples, as printed for the demo hub -------------------------------------------


def _block(language: str) -> str:
    found = re.search(rf"```{language}\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    assert found, f"docs/open-api.md has no {language} example"
    return found.group(1)


async def test_the_docs_python_example_publishes_and_reads_the_status(server: Server, tmp_path: Path) -> None:
    script = tmp_path / "publish.py"
    script.write_text(_block("python"), encoding="utf-8")
    done = await trio.run_process([sys.executable, str(script), server.base], capture_stdout=True,
                                  capture_stderr=True, check=False)
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()
    assert out.startswith("202 ") and "'channel': 'app'" in out
    (report,) = await server.notices("patient2", "report.ready")
    assert "血常规" in report["body"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl here")
async def test_the_docs_curl_example_publishes(server: Server) -> None:
    probe = await trio.run_process(["openssl", "dgst", "-sm3"], stdin=b"", capture_stdout=True, capture_stderr=True,
                                   check=False)
    if probe.returncode != 0:
        pytest.skip("this openssl has no SM3")
    done = await trio.run_process(["bash", "-c", _block("bash")], capture_stdout=True, capture_stderr=True,
                                  check=False, env={"HUB": server.base, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr.decode()
    assert orjson.loads(done.stdout)["duplicate"] is False
    assert (await server.notices("patient1", "hospital.notice"))[0]["title"] == "停车场施工"
