"""Outpatient bills, paid online through the WeChat Pay simulator, with the HIS simulator holding
the charges as FHIR ChargeItems (OUT-7, OUT-13, OUT-14, ME-6)."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import trio

from ..servers import Server
from .conftest import Hospital
from .helpers import beijing_now, book, open_session, plan, self_patient

PAYMENT_EXTENSION = "https://carehub.example/fhir/StructureDefinition/charge-payment"
W = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


# ---- helpers ----------------------------------------------------------------------------------------


async def seed(h: Hospital, patient_id: str, *items: tuple[str, str, int], **where: str) -> list[str]:
    """What the doctors ordered: ChargeItems at the HIS (code, name, fen), billable."""
    async with h.his_admin() as his:
        response = await his.post("/_sim/charges", json={
            "patient_id": patient_id, **where,
            "items": [{"code": code, "name": name, "amount_fen": fen, "category": "exam"} for code, name, fen in items],
        })
    assert response.status_code == 201, response.text
    return [c["id"] for c in response.json()["charges"]]


async def his_charges(h: Hospital, patient_id: str) -> dict[str, dict[str, Any]]:
    async with h.his_admin() as his:
        charges = (await his.get("/_sim/charges", params={"patient": patient_id})).json()["charges"]
    return {c["id"]: c["resource"] for c in charges}


async def get(h: Hospital, login: str, path: str, **params: str) -> httpx.Response:
    async with h.server.http(await h.server.token(login)) as http:
        return await http.get(path, params=params)


async def post(h: Hospital, login: str, path: str, body: Any) -> httpx.Response:
    async with h.server.http(await h.server.token(login)) as http:
        return await http.post(path, json=body)


async def pending(h: Hospital, login: str = "patient1", **params: str) -> list[dict[str, Any]]:
    response = await get(h, login, "/api/v1/me/bills", **params)
    assert response.status_code == 200, response.text
    return list(response.json()["bills"])


async def pay(h: Hospital, bill_ids: list[str], login: str = "patient1") -> dict[str, Any]:
    response = await post(h, login, "/api/v1/me/bills/pay", {"bill_ids": bill_ids})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def user_pays(h: Hospital, out_trade_no: str) -> None:
    async with h.sim() as sim:
        response = await sim.post(f"/_sim/orders/{out_trade_no}/pay", json={})
    assert response.status_code == 200, response.text


async def order(h: Hospital, out_trade_no: str, login: str = "patient1") -> dict[str, Any]:
    response = await get(h, login, f"/api/v1/me/bill-orders/{out_trade_no}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 20) -> Any:
    with trio.fail_after(timeout):
        while not (value := await check()):
            await trio.sleep(0.1)
    return value


async def order_is(h: Hospital, out_trade_no: str, status: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        o = await order(h, out_trade_no)
        return o if o["status"] == status else None

    return dict(await until(check))


async def add_test(h: Hospital, code: str = "CBC", price_fen: int = 2500, **extra: Any) -> httpx.Response:
    return await post_admin(h, "PUT", f"/api/v1/admin/tests/{code}", {
        "name": "血常规", "category": "lab", "price_fen": price_fen, "notice": "无需空腹", **extra})


async def post_admin(h: Hospital, method: str, path: str, body: Any = None) -> httpx.Response:
    async with h.server.http(await h.server.token("admin")) as http:
        return await http.request(method, path, json=body)


# ---- pending bills and paying them (OUT-7, ME-6) ----------------------------------------------------


async def test_a_family_members_unpaid_charges_at_the_his_appear_as_pending_bills(hospital: Hospital) -> None:
    """OUT-7: what the HIS holds as billable is owed; what it holds as billed is not."""
    me = await self_patient(hospital.server, "patient1")
    await seed(hospital, me, ("CT01", "胸部CT平扫", 28000), ("US02", "腹部彩超", 16000))
    async with hospital.his_admin() as his:
        await his.post("/_sim/charges", json={"patient_id": me, "items": [
            {"code": "X1", "name": "已在窗口缴费", "amount_fen": 500, "status": "billed"}]})
    response = await get(hospital, "patient1", "/api/v1/me/bills")
    assert response.status_code == 200
    body = response.json()
    assert sorted((b["name"], b["amount_fen"], b["status"]) for b in body["bills"]) == [
        ("胸部CT平扫", 28000, "unpaid"), ("腹部彩超", 16000, "unpaid")]
    assert body["total_fen"] == 44000 and body["fresh"] is True


async def test_paid_bills_are_settled_exactly_once_even_when_the_notification_is_replayed(
    hospital: Hospital,
) -> None:
    """OUT-7, ME-6: one order pays both bills; the replayed TRANSACTION.SUCCESS changes nothing."""
    me = await self_patient(hospital.server, "patient1")
    await seed(hospital, me, ("CT01", "胸部CT平扫", 28000), ("US02", "腹部彩超", 16000))
    bills = await pending(hospital)
    started = await pay(hospital, [b["bill_id"] for b in bills])
    out_trade_no = started["order"]["out_trade_no"]
    assert started["pay_params"]["package"].startswith("prepay_id=") and started["order"]["total_fen"] == 44000
    await user_pays(hospital, out_trade_no)
    paid = await order_is(hospital, out_trade_no, "paid")
    async with hospital.sim() as sim:
        assert (await sim.post(f"/_sim/notifications/{out_trade_no}/repeat")).status_code == 200

        async def replay_answered() -> bool:
            notes = (await sim.get("/_sim/notifications")).json()["notifications"]
            mine = [n for n in notes if n.get("out_trade_no") == out_trade_no]
            return len(mine) == 2 and all(n["outcome"] == "delivered" for n in mine)

        await until(replay_answered)
    after = await order(hospital, out_trade_no)
    history = (await get(hospital, "patient1", "/api/v1/me/bill-orders")).json()["orders"]
    assert after == paid and after["paid_at"] and {i["status"] for i in after["items"]} == {"paid"}
    assert [(o["out_trade_no"], o["status"], len(o["items"])) for o in history] == [(out_trade_no, "paid", 2)]
    assert await pending(hospital) == []
    # MSG-3: one "payment succeeded" notice, however often the gateway repeats itself
    await trio.sleep(0.5)
    (notice,) = await hospital.server.notices("patient1", "payment.succeeded")
    assert "440.00元" in notice["body"] and "胸部CT平扫" in notice["body"] and notice["link"] == "/h5/me/payments"


async def test_the_his_learns_that_a_paid_charge_is_billed(hospital: Hospital) -> None:
    """OUT-7: the HIS's ChargeItem goes billable -> billed, naming the payment."""
    me = await self_patient(hospital.server, "patient1")
    [charge_id] = await seed(hospital, me, ("LAB3", "肝功能", 6000))
    out_trade_no = (await pay(hospital, [f"his-{charge_id}"]))["order"]["out_trade_no"]
    await user_pays(hospital, out_trade_no)

    async def billed() -> dict[str, Any] | None:
        charge = (await his_charges(hospital, me))[charge_id]
        return charge if charge["status"] == "billed" else None

    charge = await until(billed)
    payment = next(e for e in charge["extension"] if e["url"] == PAYMENT_EXTENSION)
    assert payment["valueIdentifier"]["value"] == out_trade_no


async def test_the_his_learns_of_a_payment_even_when_it_was_down_at_the_time(hospital: Hospital) -> None:
    """The HIS push is a durable effect: a failed attempt is retried until the HIS takes it."""
    me = await self_patient(hospital.server, "patient1")
    [charge_id] = await seed(hospital, me, ("LAB3", "肝功能", 6000))
    out_trade_no = (await pay(hospital, [f"his-{charge_id}"]))["order"]["out_trade_no"]
    async with hospital.his_admin() as his:
        assert (await his.post("/_sim/faults", json={"kind": "unavailable", "count": 2})).status_code == 200
    await user_pays(hospital, out_trade_no)

    async def billed() -> bool:
        return bool((await his_charges(hospital, me))[charge_id]["status"] == "billed")

    await until(billed, timeout=40)
    async with hospital.his_admin() as his:
        statuses = [r["status"] for r in (await his.get("/_sim/requests")).json()["requests"]]
    assert statuses.count(503) == 2


async def test_bills_already_known_are_shown_while_the_his_is_unreachable(hospital: Hospital) -> None:
    me = await self_patient(hospital.server, "patient1")
    await seed(hospital, me, ("CT01", "胸部CT平扫", 28000))
    assert len(await pending(hospital)) == 1
    async with hospital.his_admin() as his:
        await his.post("/_sim/faults", json={"kind": "unavailable", "count": 1})
    response = await get(hospital, "patient1", "/api/v1/me/bills")
    assert response.status_code == 200
    assert response.json()["fresh"] is False and [b["name"] for b in response.json()["bills"]] == ["胸部CT平扫"]


async def test_a_client_retrying_with_its_client_ref_gets_the_same_order(hospital: Hospital) -> None:
    me = await self_patient(hospital.server, "patient1")
    await seed(hospital, me, ("CT01", "胸部CT平扫", 28000))
    body = {"bill_ids": [b["bill_id"] for b in await pending(hospital)], "client_ref": "pay-1"}
    first = (await post(hospital, "patient1", "/api/v1/me/bills/pay", body)).json()
    again = (await post(hospital, "patient1", "/api/v1/me/bills/pay", body)).json()
    assert again["order"]["out_trade_no"] == first["order"]["out_trade_no"]
    assert again["pay_params"]["package"] == first["pay_params"]["package"]
    await user_pays(hospital, first["order"]["out_trade_no"])
    await order_is(hospital, first["order"]["out_trade_no"], "paid")
    after = await post(hospital, "patient1", "/api/v1/me/bills/pay", body)
    assert after.status_code == 200 and after.json()["order"]["status"] == "paid" and after.json()["pay_params"] is None


async def test_a_second_order_paid_for_the_same_bills_is_refunded_whole(hospital: Hospital) -> None:
    """A bill is paid exactly once: the patient gave up on one order, paid another, then the first too."""
    me = await self_patient(hospital.server, "patient1")
    await seed(hospital, me, ("CT01", "胸部CT平扫", 28000))
    bill_ids = [b["bill_id"] for b in await pending(hospital)]
    first = (await pay(hospital, bill_ids))["order"]["out_trade_no"]
    second = (await pay(hospital, bill_ids))["order"]["out_trade_no"]
    await user_pays(hospital, second)
    await order_is(hospital, second, "paid")
    await user_pays(hospital, first)
    refunded = await order_is(hospital, first, "refunded")
    async with hospital.sim() as sim:
        gateway = (await sim.get("/_sim/orders", params={"out_trade_no": first})).json()["orders"][0]
    assert refunded["refunded_fen"] == 28000 and gateway["trade_state"] == "REFUND"
    assert [(i["status"], i["order_no"]) for i in (await order(hospital, second))["items"]] == [("paid", second)]


async def test_a_refund_goes_back_by_the_original_method_and_voids_the_charge_at_the_his(hospital: Hospital) -> None:
    me = await self_patient(hospital.server, "patient1")
    [charge_id] = await seed(hospital, me, ("CT01", "胸部CT平扫", 28000))
    out_trade_no = (await pay(hospital, [f"his-{charge_id}"]))["order"]["out_trade_no"]
    await user_pays(hospital, out_trade_no)
    await order_is(hospital, out_trade_no, "paid")
    response = await post_admin(hospital, "POST", f"/api/v1/admin/bill-orders/{out_trade_no}/refund",
                                {"reason": "检查取消"})
    assert response.status_code == 200, response.text
    refunded = await order_is(hospital, out_trade_no, "refunded")
    async with hospital.sim() as sim:
        gateway = (await sim.get("/_sim/orders", params={"out_trade_no": out_trade_no})).json()["orders"][0]

    async def aborted() -> bool:
        return bool((await his_charges(hospital, me))[charge_id]["status"] == "aborted")

    await until(aborted)
    assert refunded["refunded_fen"] == 28000 and refunded["items"][0]["status"] == "refunded"
    assert [(r["out_trade_no"], r["amount"]["refund"]) for r in gateway["refunds"]] == [(out_trade_no, 28000)]


async def test_a_create_that_times_out_is_queried_not_assumed(hospital: Hospital) -> None:
    """The gateway created the order but its answer was lost: CareHub asks, and hands the patient
    the same prepay_id instead of failing or ordering twice."""
    me = await self_patient(hospital.server, "patient1")
    await seed(hospital, me, ("US02", "腹部彩超", 16000))
    bill_ids = [b["bill_id"] for b in await pending(hospital)]
    async with hospital.sim() as sim:
        fault = {"kind": "hang", "count": 1, "path": "/v3/pay/transactions/jsapi", "accept": True}
        assert (await sim.post("/_sim/faults", json=fault)).status_code == 200
        started = await pay(hospital, bill_ids)
        out_trade_no = started["order"]["out_trade_no"]
        orders = (await sim.get("/_sim/orders", params={"out_trade_no": out_trade_no})).json()["orders"]
    assert len(orders) == 1 and orders[0]["trade_state"] == "NOTPAY"
    assert started["pay_params"]["package"] == f"prepay_id={orders[0]['prepay_id']}"
    await user_pays(hospital, out_trade_no)
    await order_is(hospital, out_trade_no, "paid")


# ---- slip QR codes -----------------------------------------------------------------------------------


async def slip_code(h: Hospital, patient_id: str, slip: str) -> str:
    response = await post_admin(h, "POST", "/api/v1/admin/slip-codes", {"patient_id": patient_id, "slip": slip})
    assert response.status_code == 200, response.text
    return str(response.json()["code"])


async def test_the_slip_qr_code_opens_exactly_that_slips_bills(hospital: Hospital) -> None:
    me = await self_patient(hospital.server, "patient1")
    await seed(hospital, me, ("CT01", "胸部CT平扫", 28000), ("US02", "腹部彩超", 16000), slip="ServiceRequest/SR1")
    await seed(hospital, me, ("RX1", "阿莫西林胶囊", 3200), slip="MedicationRequest/MR7")
    code = await slip_code(hospital, me, "ServiceRequest/SR1")
    response = await get(hospital, "patient1", "/api/v1/me/bills", slip=code)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["slip"] == "ServiceRequest/SR1" and body["total_fen"] == 44000
    assert sorted(b["name"] for b in body["bills"]) == ["胸部CT平扫", "腹部彩超"]
    assert {b["slip_code"] for b in body["bills"]} == {code}


async def test_a_forged_or_altered_slip_code_is_refused(hospital: Hospital) -> None:
    me = await self_patient(hospital.server, "patient1")
    await seed(hospital, me, ("RX1", "阿莫西林胶囊", 3200), slip="MedicationRequest/MR7")
    code = await slip_code(hospital, me, "ServiceRequest/SR1")
    raw = code[4:]
    patient, _, tag = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode().split("|")
    altered = "SL1." + base64.urlsafe_b64encode(f"{patient}|MedicationRequest/MR7|{tag}".encode()).decode()
    for forged in (altered, "SL1.bm90LWEtY29kZQ", "hello"):
        response = await get(hospital, "patient1", "/api/v1/me/bills", slip=forged)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "bad_code" and response.json()["error"]["message"]


async def test_a_slip_of_someone_outside_the_family_does_not_open(hospital: Hospital) -> None:
    """Decision: a slip code is not a bearer pass; only accounts whose family includes its patient see it."""
    me = await self_patient(hospital.server, "patient1")
    await seed(hospital, me, ("CT01", "胸部CT平扫", 28000), slip="ServiceRequest/SR1")
    code = await slip_code(hospital, me, "ServiceRequest/SR1")
    response = await get(hospital, "patient2", "/api/v1/me/bills", slip=code)
    assert response.status_code == 404 and response.json()["error"]["message"]


# ---- fee details per visit (OUT-13) ------------------------------------------------------------------


async def test_fee_details_show_each_visit_with_its_items_paid_or_not(hospital: Hospital) -> None:
    server = hospital.server
    day = beijing_now().date() + dt.timedelta(days=1)
    await open_session(server, "doctor1", plan(day, fee_fen=1000))
    booked = await book(server, "patient1", "doctor1", day)
    assert booked.status_code == 201, booked.text
    visit = booked.json()["booking_id"]
    me = await self_patient(server, "patient1")
    _, blood = await seed(hospital, me, ("CT01", "胸部CT平扫", 28000), ("LAB1", "血常规", 2500), visit_id=visit)
    out_trade_no = (await pay(hospital, [f"his-{blood}"]))["order"]["out_trade_no"]
    await user_pays(hospital, out_trade_no)
    await order_is(hospital, out_trade_no, "paid")
    response = await get(hospital, "patient1", "/api/v1/me/bills/visits")
    assert response.status_code == 200, response.text
    [found] = [v for v in response.json()["visits"] if v["visit_id"] == visit]
    assert sorted((i["name"], i["amount_fen"], i["status"]) for i in found["items"]) == [
        ("挂号费", 1000, "unpaid"), ("胸部CT平扫", 28000, "unpaid"), ("血常规", 2500, "paid")]
    assert (found["total_fen"], found["paid_fen"], found["unpaid_fen"]) == (31500, 2500, 29000)
    assert found["doctor_name"] and found["day"] == day.isoformat()


# ---- self-service test orders (OUT-14) ---------------------------------------------------------------


async def test_a_patient_orders_a_catalogue_test_and_pays_it_and_the_his_receives_the_order(
    hospital: Hospital,
) -> None:
    assert (await add_test(hospital)).status_code == 200
    catalogue = (await get(hospital, "patient1", "/api/v1/tests")).json()["tests"]
    assert [(t["code"], t["price_fen"]) for t in catalogue] == [("CBC", 2500)]
    me = await self_patient(hospital.server, "patient1")
    ordered = await post(hospital, "patient1", "/api/v1/me/test-orders", {"patient_id": me, "code": "CBC"})
    assert ordered.status_code == 201, ordered.text
    bill = ordered.json()["bill"]
    assert (bill["name"], bill["amount_fen"], bill["status"]) == ("血常规", 2500, "unpaid")
    out_trade_no = (await pay(hospital, [bill["bill_id"]]))["order"]["out_trade_no"]
    await user_pays(hospital, out_trade_no)
    await order_is(hospital, out_trade_no, "paid")

    async def at_his() -> tuple[dict[str, Any], dict[str, Any]] | None:
        async with hospital.his_admin() as his:
            requests = (await his.get("/_sim/service-requests")).json()["service_requests"]
        charges = list((await his_charges(hospital, me)).values())
        return (requests[0]["resource"], charges[0]) if requests and charges else None

    request, charge = await until(at_his)
    assert (request["status"], request["intent"], request["code"]["text"]) == ("active", "order", "血常规")
    assert request["subject"] == {"reference": f"Patient/{me}"}
    assert (charge["status"], charge["priceOverride"]) == ("billed", {"value": 25.0, "currency": "CNY"})
    assert await pending(hospital) == []  # our own charge at the HIS is not read back as a second bill


async def test_an_unverified_family_member_cannot_order_a_test(hospital: Hospital) -> None:
    await add_test(hospital)
    body = "11010520100101001"
    number = body + "10X98765432"[sum(int(c) * w for c, w in zip(body, W, strict=True)) % 11]
    added = await post(hospital, "patient1", "/api/v1/me/patients",
                       {"name": "张小宝", "id_number": number, "relation": "child", "guardian_consent": True})
    assert added.status_code == 201, added.text
    response = await post(hospital, "patient1", "/api/v1/me/test-orders",
                          {"patient_id": added.json()["id"], "code": "CBC"})
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "verification_required"


async def test_admins_keep_the_catalogue_and_a_withdrawn_test_cannot_be_ordered(hospital: Hospital) -> None:
    assert (await add_test(hospital, price_fen=2500)).status_code == 200
    changed = await add_test(hospital, price_fen=3000)
    assert changed.status_code == 200 and changed.json()["price_fen"] == 3000
    bad = await add_test(hospital, "BAD CODE", price_fen=0)
    assert bad.status_code == 422 and bad.json()["error"]["message"]
    assert (await post_admin(hospital, "DELETE", "/api/v1/admin/tests/CBC")).status_code == 200
    assert (await get(hospital, "patient1", "/api/v1/tests")).json()["tests"] == []
    listed = (await get(hospital, "admin", "/api/v1/admin/tests")).json()["tests"]
    assert [(t["code"], t["active"]) for t in listed] == [("CBC", False)]
    me = await self_patient(hospital.server, "patient1")
    response = await post(hospital, "patient1", "/api/v1/me/test-orders", {"patient_id": me, "code": "CBC"})
    assert response.status_code == 404


async def test_without_a_payment_gateway_a_bill_payment_is_refused_with_its_own_code(server: Server) -> None:
    """OUT-7: a hospital without online payment says so, 409 payment_not_offered (split from the booking
    payment's 503 payment_unavailable, #16)."""
    h = Hospital(server, None, None)  # type: ignore[arg-type]  # only the hub: no gateway, no HIS
    assert (await add_test(h)).status_code == 200
    me = await self_patient(server, "patient1")
    ordered = await post(h, "patient1", "/api/v1/me/test-orders", {"patient_id": me, "code": "CBC"})
    assert ordered.status_code == 201, ordered.text
    response = await post(h, "patient1", "/api/v1/me/bills/pay", {"bill_ids": [ordered.json()["bill"]["bill_id"]]})
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "payment_not_offered"
