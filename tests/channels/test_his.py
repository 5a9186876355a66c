"""The HIS adapter (FHIR R4 Appointment) against the HIS simulator, over real HTTP.

The simulator (carehub/bots/his_sim.py) implements the FHIR server's side on its own; requests
the adapter would never make (broken resources, searches by patient and date) are crafted here
with httpx. Names and ids are synthetic.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

from carehub.bots.his_sim import HisHandle, serve_his
from carehub.channels.his import (
    BEIJING,
    AppointmentInfo,
    HisClient,
    HisConfig,
    HisError,
    HisRejected,
    HisTimeout,
    HisUnavailable,
    appointment_resource,
)

TOKEN = "his-test-token-0123456789"
SYSTEM = "urn:carehub:booking"
BOOKING = AppointmentInfo(
    booking_id="B20261125-0001",
    status="booked",
    patient_id="P1029",
    patient_name="测试张三",
    doctor_id="D0107",
    doctor_name="测试李医生",
    department_id="cardio",
    department_name="心内科",
    start=dt.datetime(2026, 11, 25, 8, 30, tzinfo=BEIJING),
    end=dt.datetime(2026, 11, 25, 8, 45, tzinfo=BEIJING),
    channel="wechat",
    created=dt.datetime(2026, 11, 20, 10, 0, 5, tzinfo=BEIJING),
)
FHIR_HEADERS = {"authorization": f"Bearer {TOKEN}", "content-type": "application/fhir+json"}


@pytest.fixture
async def his(nursery: trio.Nursery) -> HisHandle:
    handle: HisHandle = await nursery.start(functools.partial(serve_his, port=0, token=TOKEN, hang_seconds=5))
    return handle


@pytest.fixture
async def client(his: HisHandle) -> AsyncIterator[HisClient]:
    async with HisClient(HisConfig(his.base_url, his.token, timeout_seconds=5)) as his_client:
        yield his_client


@pytest.fixture
async def admin(his: HisHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=his.admin_url, timeout=5) as http:
        yield http


async def stored(admin: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await admin.get("/_sim/appointments")
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()["appointments"]
    return found


async def requests_made(admin: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await admin.get("/_sim/requests")
    response.raise_for_status()
    return list(reversed(response.json()["requests"]))


def test_the_appointment_resource_depends_on_the_booking_alone() -> None:
    in_utc = dataclasses.replace(BOOKING, start=BOOKING.start.astimezone(dt.UTC))
    resource = appointment_resource(in_utc)
    assert resource == appointment_resource(BOOKING)
    assert "id" not in resource and "meta" not in resource
    assert resource["start"] == "2026-11-25T08:30:00+08:00"
    assert resource["created"] == "2026-11-20T10:00:05+08:00"
    assert resource["identifier"] == [{"use": "usual", "system": SYSTEM, "value": "B20261125-0001"}]
    assert resource["comment"] == "预约渠道：微信公众号"
    with pytest.raises(ValueError, match="time zone"):
        appointment_resource(dataclasses.replace(BOOKING, start=dt.datetime(2026, 11, 25, 8, 30)))


async def test_a_booking_is_created_at_the_his_as_a_valid_appointment(
    client: HisClient, admin: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        appointment_id = await client.push_appointment(BOOKING)
        [appointment] = await stored(admin)
        [request] = await requests_made(admin)
    resource = appointment["resource"]
    assert appointment["id"] == appointment_id == resource["id"]
    assert appointment["version"] == "1"
    assert (request["method"], request["status"]) == ("PUT", 201)
    assert "identifier=urn" in request["query"]
    assert resource["status"] == "booked"
    assert resource["identifier"][0]["value"] == BOOKING.booking_id
    assert (resource["start"], resource["end"]) == ("2026-11-25T08:30:00+08:00", "2026-11-25T08:45:00+08:00")
    actors = {p["actor"]["reference"]: (p["actor"]["display"], p["status"]) for p in resource["participant"]}
    assert actors == {
        "Patient/P1029": ("测试张三", "accepted"),
        "Practitioner/D0107": ("测试李医生", "accepted"),
        "HealthcareService/cardio": ("心内科", "accepted"),
    }


async def test_pushing_the_same_booking_twice_leaves_one_appointment_with_one_version(
    client: HisClient, admin: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        first = await client.push_appointment(BOOKING)
        second = await client.push_appointment(BOOKING)
        [appointment] = await stored(admin)
        statuses = [r["status"] for r in await requests_made(admin)]
    assert first == second == appointment["id"]
    assert (appointment["version"], appointment["history"]) == ("1", 1)
    assert statuses == [201, 200]


async def test_a_cancellation_updates_status_and_reason(client: HisClient, admin: httpx.AsyncClient) -> None:
    cancelled = dataclasses.replace(BOOKING, status="cancelled", cancel_reason="患者本人取消")
    with trio.fail_after(10):
        booked_id = await client.push_appointment(BOOKING)
        cancelled_id = await client.push_appointment(cancelled)
        [appointment] = await stored(admin)
    assert booked_id == cancelled_id
    assert (appointment["version"], appointment["history"]) == ("2", 2)
    assert appointment["resource"]["status"] == "cancelled"
    assert appointment["resource"]["cancelationReason"] == {"text": "患者本人取消"}


@pytest.mark.parametrize(
    ("state", "fhir_status"),
    [("held", "pending"), ("paid", "booked"), ("checked_in", "arrived"), ("seen", "fulfilled"), ("no_show", "noshow")],
)
async def test_each_booking_state_becomes_its_fhir_appointment_status(
    client: HisClient, state: str, fhir_status: str
) -> None:
    with trio.fail_after(10):
        await client.push_appointment(dataclasses.replace(BOOKING, status=state))
        resource = await client.get_appointment(BOOKING.booking_id)
    assert resource is not None
    assert resource["status"] == fhir_status
    patient = next(p for p in resource["participant"] if p["actor"]["reference"].startswith("Patient/"))
    assert patient["status"] == ("needs-action" if state == "held" else "accepted")


async def test_an_invalid_appointment_is_rejected_with_the_operation_outcome_text(
    client: HisClient, admin: httpx.AsyncClient
) -> None:
    backwards = dataclasses.replace(BOOKING, end=BOOKING.start - dt.timedelta(minutes=15))
    with trio.fail_after(10):
        with pytest.raises(HisRejected) as rejected:
            await client.push_appointment(backwards)
        assert await stored(admin) == []
    assert rejected.value.status == 422
    assert not rejected.value.retryable
    assert rejected.value.issues == ("Appointment.end: the appointment ends before it starts (end < start)",)
    assert "ends before it starts" in str(rejected.value)


async def test_a_wrong_token_is_rejected_and_not_retryable(his: HisHandle, admin: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        async with HisClient(HisConfig(his.base_url, "not-the-token")) as intruder:
            with pytest.raises(HisRejected) as rejected:
                await intruder.push_appointment(BOOKING)
        assert await stored(admin) == []
    assert rejected.value.status == 401
    assert not rejected.value.retryable
    assert "token is not valid" in rejected.value.message


async def test_an_unavailable_his_raises_a_retryable_error_and_a_later_push_lands(
    client: HisClient, admin: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        await admin.post("/_sim/faults", json={"kind": "unavailable", "count": 1})
        with pytest.raises(HisUnavailable) as failed:
            await client.push_appointment(BOOKING)
        await client.push_appointment(BOOKING)
        [appointment] = await stored(admin)
    assert failed.value.status == 503
    assert failed.value.retryable
    assert appointment["history"] == 1


async def test_an_unreachable_his_raises_a_retryable_unavailable_error() -> None:
    with socket.socket() as probe:  # a port nobody listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with trio.fail_after(10):
        async with HisClient(HisConfig(f"http://127.0.0.1:{port}/fhir", TOKEN)) as nowhere:
            with pytest.raises(HisUnavailable) as failed:
                await nowhere.push_appointment(BOOKING)
    assert failed.value.retryable
    assert failed.value.status is None


async def test_a_hanging_his_times_out_and_a_retry_lands_exactly_once(his: HisHandle, admin: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        # the HIS stores the appointment, but its answer never comes back
        await admin.post("/_sim/faults", json={"kind": "timeout", "count": 1, "accept": True})
        async with HisClient(HisConfig(his.base_url, TOKEN, timeout_seconds=0.3)) as impatient:
            with pytest.raises(HisTimeout) as timed_out:
                await impatient.push_appointment(BOOKING)
            appointment_id = await impatient.push_appointment(BOOKING)
        [appointment] = await stored(admin)
    assert timed_out.value.retryable
    assert appointment["id"] == appointment_id
    assert (appointment["version"], appointment["history"]) == ("1", 1)


async def test_search_by_identifier_returns_the_appointment(client: HisClient) -> None:
    other = dataclasses.replace(BOOKING, booking_id="B20261125-0002", patient_id="P2048")
    with trio.fail_after(10):
        appointment_id = await client.push_appointment(BOOKING)
        await client.push_appointment(other)
        found = await client.get_appointment(BOOKING.booking_id)
        missing = await client.get_appointment("B-never-booked")
    assert found is not None
    assert found["id"] == appointment_id
    assert found["identifier"][0]["value"] == BOOKING.booking_id
    assert found["meta"]["versionId"] == "1"
    assert missing is None


async def test_a_booking_id_with_search_delimiters_is_escaped_and_still_pushed_once(
    client: HisClient, admin: httpx.AsyncClient
) -> None:
    odd = dataclasses.replace(BOOKING, booking_id=r"B|7,8$9\x")
    with trio.fail_after(10):
        await client.push_appointment(odd)
        await client.push_appointment(odd)
        found = await client.get_appointment(odd.booking_id)
        [appointment] = await stored(admin)
    assert found is not None
    assert found["identifier"][0]["value"] == r"B|7,8$9\x"
    assert appointment["history"] == 1


async def test_a_push_matching_several_his_appointments_is_refused(client: HisClient, admin: httpx.AsyncClient) -> None:
    duplicate = appointment_resource(BOOKING)
    with trio.fail_after(10):
        for _ in range(2):  # the HIS already holds two appointments with the booking's identifier
            (await admin.post("/_sim/appointments", json=duplicate)).raise_for_status()
        with pytest.raises(HisRejected) as rejected:
            await client.push_appointment(BOOKING)
        with pytest.raises(HisError, match="2 appointments"):
            await client.get_appointment(BOOKING.booking_id)
    assert rejected.value.status == 412
    assert not rejected.value.retryable


async def test_the_simulator_answers_a_create_with_location_and_etag(his: HisHandle) -> None:
    url = f"{his.base_url}/Appointment"
    params = {"identifier": f"{SYSTEM}|B-raw-1"}
    body = appointment_resource(dataclasses.replace(BOOKING, booking_id="B-raw-1"))
    with trio.fail_after(10):
        async with httpx.AsyncClient(timeout=5) as http:
            created = await http.put(url, params=params, json=body, headers=FHIR_HEADERS)
            same = await http.put(url, params=params, json=body, headers=FHIR_HEADERS)
            read = await http.get(f"{url}/{created.json()['id']}", headers=FHIR_HEADERS)
    rid = created.json()["id"]
    assert created.status_code == 201
    assert created.headers["content-type"].startswith("application/fhir+json")
    assert created.headers["location"] == f"{url}/{rid}/_history/1"
    assert created.headers["etag"] == 'W/"1"'
    assert (same.status_code, same.headers["etag"]) == (200, 'W/"1"')
    assert read.json() == created.json()


@pytest.mark.parametrize(
    ("change", "expression", "text"),
    [
        ({"status": "confirmed"}, "Appointment.status", "is not one of"),
        ({"cancelationReason": {"text": "x"}}, "Appointment", "app-4"),
        ({"cancellationReason": {"text": "x"}}, "Appointment.cancellationReason", "unrecognised element"),
        ({"start": "2026-11-25T08:30:00"}, "Appointment.start", "is not an instant"),
        ({"end": None}, "Appointment.end", "null is not a valid FHIR value"),
        ({"participant": [{"actor": {"reference": "Patient/P1029"}}]}, "Appointment.participant[0].status", "required"),
    ],
)
async def test_the_simulator_refuses_resources_that_break_r4_rules(
    his: HisHandle, change: dict[str, Any], expression: str, text: str
) -> None:
    body = appointment_resource(BOOKING) | change
    with trio.fail_after(10):
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.post(f"{his.base_url}/Appointment", json=body, headers=FHIR_HEADERS)
    outcome = response.json()
    assert response.status_code == 422
    assert outcome["resourceType"] == "OperationOutcome"
    assert any(
        issue["expression"][0].startswith(expression) and text in issue["diagnostics"] for issue in outcome["issue"]
    ), outcome


async def test_the_simulator_searches_by_patient_and_date(client: HisClient, his: HisHandle) -> None:
    afternoon = dataclasses.replace(
        BOOKING,
        booking_id="B20261126-0009",
        start=dt.datetime(2026, 11, 26, 14, 0, tzinfo=BEIJING),
        end=dt.datetime(2026, 11, 26, 14, 15, tzinfo=BEIJING),
    )
    with trio.fail_after(10):
        await client.push_appointment(BOOKING)
        await client.push_appointment(afternoon)
        async with httpx.AsyncClient(base_url=his.base_url, headers=FHIR_HEADERS, timeout=5) as http:

            async def total(**params: str) -> int:
                bundle = (await http.get("/Appointment", params=params)).json()
                assert (bundle["resourceType"], bundle["type"]) == ("Bundle", "searchset")
                return int(bundle["total"])

            by_patient = await total(patient="Patient/P1029")
            on_the_25th = await total(patient="P1029", date="2026-11-25")
            from_the_26th = await total(date="ge2026-11-26")
            other_patient = await total(patient="Patient/P9999")
    assert (by_patient, on_the_25th, from_the_26th, other_patient) == (2, 1, 1, 0)
