"""Clinical alerts over HTTP (MSG-7, DOC-19): a signed FHIR DiagnosticReport with a critical value
alerts the responsible doctor; the acknowledgement is the proof (who, when, device); without it the
alert escalates to the department's on-call doctor; bad reports get a clear 4xx."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import trio

from ..identity.test_partners import issue_key, signed_headers
from ..servers import Server, eventually, run_server

FHIR_ROUTE = "/api/v1/open/fhir/DiagnosticReport"
V3 = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


async def patient_id(server: Server, login: str = "patient1") -> str:
    async with server.http(await server.token(login)) as http:
        return str((await http.get("/api/v1/me/patients")).json()["patients"][0]["id"])


def report(patient: str, doctor: str | None, *, flag: str = "HH", report_id: str = "LIS-1") -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": report_id,
        "identifier": [{"system": "urn:lis:report", "value": report_id}],
        "status": "final",
        "code": {"text": "电解质"},
        "subject": {"reference": f"Patient/{patient}"},
        "contained": [{
            "resourceType": "Observation", "id": "k", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3", "display": "血钾"}]},
            "valueQuantity": {"value": 6.8 if flag == "HH" else 4.1, "unit": "mmol/L"},
            "interpretation": [{"coding": [{"system": V3, "code": flag}]}],
        }],
        "result": [{"reference": "#k"}],
    }
    if doctor:
        body["resultsInterpreter"] = [{"reference": f"Practitioner/{doctor}"}]
    return body


async def post_report(server: Server, key: tuple[str, str], resource: Any, *, raw: bytes | None = None
                      ) -> httpx.Response:
    body = raw if raw is not None else orjson.dumps(resource)
    headers = signed_headers(*key, "POST", FHIR_ROUTE, body)
    headers["Content-Type"] = "application/fhir+json"
    async with server.http() as http:
        return await http.post(FHIR_ROUTE, content=body, headers=headers)


async def my_alerts(server: Server, login: str) -> list[dict[str, Any]]:
    async with server.http(await server.token(login)) as http:
        answer = await http.get("/api/v1/doctor/alerts")
    assert answer.status_code == 200, answer.text
    return list(answer.json()["items"])


async def test_a_critical_value_alerts_the_doctor_and_the_ack_is_the_proof(server: Server) -> None:
    key = await issue_key(server, ["alerts.raise"])
    doctor1, doctor2 = await server.account_id("doctor1"), await server.account_id("doctor2")
    answer = await post_report(server, key, report(await patient_id(server), doctor1))
    assert answer.status_code == 202, answer.text
    (alert_id,) = answer.json()["alert_ids"]
    # in-app and (critical: always) planned for SMS
    (notice,) = await server.notices("doctor1", "critical.value")
    assert "血钾" in notice["body"] and "6.8 mmol/L" in notice["body"] and "危急高值" in notice["body"]
    (alert,) = await my_alerts(server, "doctor1")
    assert alert["id"] == alert_id and alert["status"] == "open" and alert["patient_label"].startswith("张")
    assert [c["account_id"] for c in alert["contacts"]] == [doctor1, doctor2, await server.account_id("doctor3")]
    assert [s["action"] for s in alert["steps"]] == ["raised", "notified"]
    assert await my_alerts(server, "doctor2") == []  # not alerted yet
    async with server.http(await server.token("doctor2")) as http:
        refused = await http.post(f"/api/v1/doctor/alerts/{alert_id}/ack", json={"device": "ws-2"})
    assert refused.status_code == 403, refused.text
    async with server.http(await server.token("doctor1")) as http:
        bad = await http.post(f"/api/v1/doctor/alerts/{alert_id}/ack", json={"device": ""})
        assert bad.status_code == 422
        acked = await http.post(f"/api/v1/doctor/alerts/{alert_id}/ack", json={"device": "browser-abc"})
        assert acked.status_code == 200, acked.text
        assert acked.json()["acked_by"] == doctor1 and acked.json()["device"] == "browser-abc"
        again = await http.post(f"/api/v1/doctor/alerts/{alert_id}/ack", json={"device": "browser-abc"})
        assert again.status_code == 409 and "李建国" in again.json()["error"]["message"]
        proof = (await http.get(f"/api/v1/doctor/alerts/{alert_id}")).json()
    assert proof["status"] == "acknowledged" and proof["acked_by"] == doctor1 and proof["ack_device"] == "browser-abc"
    assert proof["acked_at"] and proof["steps"][-1]["action"] == "acknowledged"
    assert await my_alerts(server, "doctor1") == []
    async with server.http(await server.token("ops")) as http:
        assert (await http.get("/api/v1/ops/alerts")).json()["items"] == []
    # the same report again raises nothing new
    repeat = await post_report(server, key, report(await patient_id(server), doctor1))
    assert repeat.json()["alert_ids"] == [alert_id]
    assert len(await server.notices("doctor1", "critical.value")) == 1


async def test_nothing_critical_answers_200_and_bad_reports_a_clear_4xx(server: Server) -> None:
    key = await issue_key(server, ["alerts.raise"])
    patient, doctor1 = await patient_id(server), await server.account_id("doctor1")
    normal = await post_report(server, key, report(patient, doctor1, flag="N"))
    assert normal.status_code == 200 and normal.json() == {"alert_ids": []}
    assert (await post_report(server, key, None, raw=b"{not json")).status_code == 400
    wrong = await post_report(server, key, {"resourceType": "Observation"})
    assert wrong.status_code == 422 and "DiagnosticReport" in wrong.json()["error"]["message"]
    dangling = report(patient, doctor1)
    dangling["result"] = [{"reference": "#missing"}]
    assert (await post_report(server, key, dangling)).status_code == 422
    unknown = await post_report(server, key, report("no-such-patient", doctor1))
    assert unknown.status_code == 422 and "患者" in unknown.json()["error"]["message"]
    nobody = await post_report(server, key, report(patient, None))
    assert nobody.status_code == 422 and "负责医生" in nobody.json()["error"]["message"]
    other = await issue_key(server, ["directory.read"])
    assert (await post_report(server, other, report(patient, doctor1))).status_code == 403
    async with server.http() as http:
        assert (await http.post(FHIR_ROUTE, content=orjson.dumps(report(patient, doctor1)))).status_code == 401


async def test_without_an_ack_the_alert_escalates_to_the_on_call_doctor(database_url: str) -> None:
    with trio.fail_after(90):
        async with run_server(database_url, alert_ack_minutes=0.03) as server:  # 1.8 s each
            key = await issue_key(server, ["alerts.raise"])
            doctor1 = await server.account_id("doctor1")
            answer = await post_report(server, key, report(await patient_id(server), doctor1))
            (alert_id,) = answer.json()["alert_ids"]

            async def at_on_call() -> bool:
                return [a["id"] for a in await my_alerts(server, "doctor2")] == [alert_id]

            await eventually(at_on_call, timeout=15)
            (notice,) = await server.notices("doctor2", "critical.value")
            assert "王晓燕医生" in notice["body"]
            (alert,) = await my_alerts(server, "doctor1")  # the first doctor still sees it, escalated
            assert alert["status"] == "escalated" and alert["level"] == 1
            assert [s["action"] for s in alert["steps"]][:4] == ["raised", "notified", "escalated", "notified"]

            async def unanswered() -> bool:
                async with server.http(await server.token("ops")) as http:
                    items = (await http.get("/api/v1/ops/alerts")).json()["items"]
                return bool(items) and items[0]["status"] == "unanswered"

            await eventually(unanswered, timeout=20)
            assert any("unanswered" in a.text for a in server.app.services.hub.alarms)
            # a late acknowledgement by the head is still recorded
            async with server.http(await server.token("doctor3")) as http:
                acked = await http.post(f"/api/v1/doctor/alerts/{alert_id}/ack", json={"device": "pad-9"})
            assert acked.status_code == 200 and acked.json()["status"] == "acknowledged"


def test_the_simulators_own_hmac_sm3_agrees_with_carehubs() -> None:
    from carehub.bots.his_sim import hmac_sm3_hex
    from carehub.storage.crypto import hmac_sm3

    for key in (b"k", b"x" * 64, b"y" * 100):
        assert hmac_sm3_hex(key, b"POST\n/p\n1\nn\nabc") == hmac_sm3(key, b"POST\n/p\n1\nn\nabc").hex()


async def test_the_his_simulator_publishes_a_critical_value_that_alerts_the_doctor(server: Server) -> None:
    import functools

    from carehub.bots.his_sim import serve_his

    key_id, secret = await issue_key(server, ["alerts.raise"])
    patient, doctor1 = await patient_id(server), await server.account_id("doctor1")
    async with trio.open_nursery() as nursery:
        his = await nursery.start(functools.partial(serve_his, port=0))
        async with httpx.AsyncClient(base_url=his.admin_url, timeout=30) as sim:
            unconfigured = await sim.post("/_sim/critical", json={"patient_id": patient, "item": "血钾", "value": 2.1,
                                                                  "flag": "LL"})
            assert unconfigured.status_code == 409
            await sim.post("/_sim/carehub", json={"url": server.base, "key_id": key_id, "secret": secret})
            bad = await sim.post("/_sim/critical", json={"patient_id": patient, "item": "血钾", "flag": "XX"})
            assert bad.status_code == 400
            sent = await sim.post("/_sim/critical", json={
                "patient_id": patient, "item": "血钾", "value": 2.1, "unit": "mmol/L", "flag": "LL",
                "doctor_id": doctor1})
        nursery.cancel_scope.cancel()
    assert sent.status_code == 200, sent.text
    assert sent.json()["status"] == 202 and len(sent.json()["answer"]["alert_ids"]) == 1
    (notice,) = await server.notices("doctor1", "critical.value")
    assert "2.1 mmol/L" in notice["body"] and "危急低值" in notice["body"]


def test_a_bundle_with_the_report_and_its_observations_is_read_too() -> None:
    from carehub.messaging.alerts import parse_report

    inner = report("p1", "d1")
    obs = {**inner.pop("contained")[0], "id": "k1"}
    inner["result"] = [{"reference": "Observation/k1"}]
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": inner}, {"fullUrl": "urn:uuid:1", "resource": obs}]}
    parsed = parse_report(orjson.dumps(bundle))
    assert parsed.patient_id == "p1" and parsed.doctors == ["d1"]
    assert [(c.item, c.value, c.flag) for c in parsed.criticals] == [("血钾", "6.8 mmol/L", "HH")]
