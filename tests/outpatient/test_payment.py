"""Paying for a booking through the WeChat Pay v3 simulator (OUT-6).

Callbacks, replays, refunds, a stale callback after a refund, and a mixed insurance + cash order.
"""

from __future__ import annotations

import datetime as dt
import functools
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

from carehub.bots.pay_gateway import GatewayHandle, GatewaySettings, SimKeys, generate_keys, serve_pay_gateway

from ..servers import Server, run_server
from .helpers import beijing_now, book, open_session, plan

SETTINGS = GatewaySettings(refund_seconds=0.2, notify_time_scale=0.01)


@pytest.fixture(scope="session")
def keys() -> SimKeys:
    return generate_keys()


@pytest.fixture
async def paying(
    database_url: str, nursery: trio.Nursery, keys: SimKeys
) -> AsyncIterator[tuple[Server, GatewayHandle]]:
    gateway: GatewayHandle = await nursery.start(functools.partial(serve_pay_gateway, port=0, settings=SETTINGS,
                                                                   keys=keys))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with trio.fail_after(120):
        async with run_server(
            database_url, port=port, pay_url=gateway.base_url, pay_mchid=gateway.mchid, pay_appid=gateway.appid,
            pay_merchant_serial=gateway.merchant_serial, pay_merchant_key_pem=gateway.merchant_private_key_pem,
            pay_platform_key_id=gateway.platform_key_id, pay_platform_public_key_pem=gateway.platform_public_key_pem,
            pay_apiv3_key=gateway.apiv3_key, pay_notify_url=f"http://127.0.0.1:{port}/api/v1/payments/wechat/notify",
        ) as server:
            yield server, gateway


async def held_booking(server: Server, **plan_args: Any) -> dict[str, Any]:
    day = beijing_now().date() + dt.timedelta(days=1)
    await open_session(server, "doctor1", plan(day, fee_fen=1000, **plan_args))
    response = await book(server, "patient1", "doctor1", day)
    assert response.status_code == 201 and response.json()["status"] == "held", response.text
    return dict(response.json())


async def pay(server: Server, booking_id: str, **body: Any) -> dict[str, Any]:
    async with server.http(await server.token("patient1")) as http:
        response = await http.post(f"/api/v1/me/bookings/{booking_id}/pay", json=body or {"method": "self"})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def booking_status(server: Server, booking_id: str) -> dict[str, Any]:
    async with server.http(await server.token("patient1")) as http:
        return dict((await http.get(f"/api/v1/me/bookings/{booking_id}")).json())


async def until(server: Server, booking_id: str, check: Any, timeout: float = 15) -> dict[str, Any]:
    with trio.fail_after(timeout):
        while True:
            booking = await booking_status(server, booking_id)
            if check(booking):
                return booking
            await trio.sleep(0.1)


async def test_a_paid_notification_confirms_the_booking_once_even_when_replayed(
    paying: tuple[Server, GatewayHandle],
) -> None:
    server, gateway = paying
    booking = await held_booking(server)
    started = await pay(server, booking["booking_id"])
    assert started["pay_params"]["package"].startswith("prepay_id=")
    out_trade_no = started["order"]["out_trade_no"]
    async with httpx.AsyncClient(base_url=gateway.base_url) as sim:
        assert (await sim.post(f"/_sim/orders/{out_trade_no}/pay", json={})).status_code == 200
        paid = await until(server, booking["booking_id"], lambda b: b["status"] == "booked")
        assert (await sim.post(f"/_sim/notifications/{out_trade_no}/repeat")).status_code == 200
        with trio.fail_after(10):
            while not [n for n in (await sim.get("/_sim/notifications")).json()["notifications"]
                       if n.get("delivered") or len(n.get("attempts", [])) >= 1][1:]:
                await trio.sleep(0.1)
    await server.notices("patient1", "payment.succeeded")
    await trio.sleep(0.5)
    async with server.http(await server.token("patient1")) as http:
        items = (await http.get("/api/v1/me/stream")).json()["items"]
    # MSG-2/MSG-3: one "booking confirmed" and one "payment succeeded" notice, however often the gateway repeats
    confirmed = [i for i in items if i["type"] == "notice" and i["body"]["kind"] in ("booking.confirmed",
                 "payment.succeeded") and i["body"]["booking_id"] == paid["booking_id"]]
    assert paid["order"]["status"] == "paid" and sorted(i["body"]["kind"] for i in confirmed) == [
        "booking.confirmed", "payment.succeeded"]
    assert "visit_code" in paid


async def test_a_cancelled_paid_booking_is_refunded_and_a_stale_payment_callback_changes_nothing(
    paying: tuple[Server, GatewayHandle],
) -> None:
    """Refund by the original method; then the old TRANSACTION.SUCCESS arrives again, out of order."""
    server, gateway = paying
    booking = await held_booking(server)
    out_trade_no = (await pay(server, booking["booking_id"]))["order"]["out_trade_no"]
    async with httpx.AsyncClient(base_url=gateway.base_url) as sim:
        await sim.post(f"/_sim/orders/{out_trade_no}/pay", json={})
        await until(server, booking["booking_id"], lambda b: b["status"] == "booked")
        async with server.http(await server.token("patient1")) as http:
            cancelled = await http.post(f"/api/v1/me/bookings/{booking['booking_id']}/cancel", json={})
        assert cancelled.status_code == 200, cancelled.text
        refunded = await until(server, booking["booking_id"], lambda b: b["order"]["status"] == "refunded")
        assert (await sim.post(f"/_sim/notifications/{out_trade_no}/repeat")).status_code == 200
        await trio.sleep(1.0)
        order = (await sim.get("/_sim/orders", params={"out_trade_no": out_trade_no})).json()
    after = await booking_status(server, booking["booking_id"])
    assert refunded["status"] == "cancelled" and refunded["order"]["refunded_fen"] == 1000
    assert after["status"] == "cancelled" and after["order"]["status"] == "refunded"
    assert "REFUND" in str(order)


async def test_a_mixed_payment_splits_insurance_and_cash(paying: tuple[Server, GatewayHandle]) -> None:
    """OUT-6: 6.00 from insurance (统筹) and 4.00 cash in one order."""
    server, gateway = paying
    booking = await held_booking(server)
    async with httpx.AsyncClient(base_url=gateway.base_url) as sim:
        auth = (await sim.post("/_sim/nhsa/auth", json={})).json()["pay_auth_no"]
        pre = (await sim.post("/_sim/nhsa/presettle", json={
            "pay_auth_no": auth, "total_fee": 1000, "med_ins_gov_fee": 600, "med_ins_self_fee": 0,
            "med_ins_other_fee": 0, "med_ins_cash_fee": 400})).json()
        started = await pay(server, booking["booking_id"], method="mixed", insurance_fen=600, pay_auth_no=auth,
                            pay_order_id=pre["pay_order_id"])
        assert started["mix_trade_no"] and started["order"]["cash_fen"] == 400
        await sim.post(f"/_sim/orders/{started['order']['out_trade_no']}/pay", json={})
    paid = await until(server, booking["booking_id"], lambda b: b["status"] == "booked")
    assert paid["order"]["insurance_fen"] == 600 and paid["order"]["cash_fen"] == 400
    row = await server.app.services.db.fetchrow(
        "SELECT method, status, insurance_fen, cash_fen FROM payment_orders WHERE booking_id = $1",
        booking["booking_id"])
    assert dict(row) == {"method": "mixed", "status": "paid", "insurance_fen": 600, "cash_fen": 400}


async def paid_with_insurance(server: Server, sim: httpx.AsyncClient, booking_id: str, insurance_fen: int) -> None:
    """The patient authorizes 医保电子凭证, the HIS pre-settles, the patient pays (mixed, or insurance only)."""
    auth = (await sim.post("/_sim/nhsa/auth", json={})).json()["pay_auth_no"]
    pre = (await sim.post("/_sim/nhsa/presettle", json={
        "pay_auth_no": auth, "total_fee": 1000, "med_ins_gov_fee": insurance_fen, "med_ins_self_fee": 0,
        "med_ins_other_fee": 0, "med_ins_cash_fee": 1000 - insurance_fen})).json()
    method = "insurance" if insurance_fen == 1000 else "mixed"
    started = await pay(server, booking_id, method=method, insurance_fen=insurance_fen, pay_auth_no=auth,
                        pay_order_id=pre["pay_order_id"])
    await sim.post(f"/_sim/orders/{started['order']['out_trade_no']}/pay", json={})
    await until(server, booking_id, lambda b: b["status"] == "booked")


async def cancelled_and_refunded(server: Server, booking_id: str, timeout: float = 15) -> Any:
    """The patient cancels the paid booking; the booking once its order is refunded."""
    async with server.http(await server.token("patient1")) as http:
        cancelled = await http.post(f"/api/v1/me/bookings/{booking_id}/cancel", json={})
    assert cancelled.status_code == 200, cancelled.text
    return await until(server, booking_id, lambda b: b["order"]["status"] == "refunded", timeout)


async def test_a_cancelled_mixed_payment_returns_the_insurance_part_through_the_nhsa_and_the_cash_part_through_wechat(
    paying: tuple[Server, GatewayHandle],
) -> None:
    """OUT-6: 6.00 back to 统筹 by NHSA 6203 + the med-ins refund notify, 4.00 by the WeChat refund."""
    server, gateway = paying
    booking = await held_booking(server)
    async with httpx.AsyncClient(base_url=gateway.base_url) as sim:
        await paid_with_insurance(server, sim, booking["booking_id"], 600)
        refunded = await cancelled_and_refunded(server, booking["booking_id"])
        seen = (await sim.get("/_sim/orders", params={"out_trade_no": refunded["order"]["out_trade_no"]})).json()
        presettlements = (await sim.get("/_sim/orders")).json()["nhsa"]["presettlements"]
    [cash] = seen["orders"]
    [mixed] = seen["mixed_orders"]
    [presettlement] = presettlements
    assert refunded["order"]["refunded_fen"] == 1000
    assert [(r["out_refund_no"], r["amount"]["refund"], r["status"]) for r in cash["refunds"]] == [
        (f"{cash['out_trade_no']}R", 400, "SUCCESS")]
    assert mixed["mix_pay_status"] == "MIX_PAY_REFUND"
    assert [(r["out_refund_no"], r["med_refund_gov_fee"]) for r in mixed["med_ins_refunds"]] == [
        (f"{cash['out_trade_no']}R", 600)]
    assert presettlement["status"] == "REFUNDED" and [r["fund"] for r in presettlement["refunds"]] == [600]


async def test_a_cancelled_insurance_only_payment_is_returned_through_the_nhsa_alone(
    paying: tuple[Server, GatewayHandle],
) -> None:
    """OUT-6: no cash part, so no WeChat refund; the order is refunded once the insurance part is back."""
    server, gateway = paying
    booking = await held_booking(server)
    async with httpx.AsyncClient(base_url=gateway.base_url) as sim:
        await paid_with_insurance(server, sim, booking["booking_id"], 1000)
        refunded = await cancelled_and_refunded(server, booking["booking_id"])
        seen = (await sim.get("/_sim/orders")).json()
    assert refunded["order"]["refunded_fen"] == 1000
    assert seen["orders"] == []
    assert seen["mixed_orders"][0]["mix_pay_status"] == "MIX_PAY_REFUND"


async def test_a_mixed_refund_retried_after_a_lost_answer_does_not_refund_twice(
    paying: tuple[Server, GatewayHandle],
) -> None:
    """OUT-6: the med-ins refund notify is carried out but its answer is lost; the effect tries again."""
    server, gateway = paying
    booking = await held_booking(server)
    async with httpx.AsyncClient(base_url=gateway.base_url) as sim:
        await paid_with_insurance(server, sim, booking["booking_id"], 600)
        fault = {"kind": "500", "count": 1, "path": "/v3/med-ins/refunds/notify", "accept": True}
        assert (await sim.post("/_sim/faults", json=fault)).status_code == 200
        refunded = await cancelled_and_refunded(server, booking["booking_id"], 40)
        seen = (await sim.get("/_sim/orders")).json()
        faults_left = (await sim.post("/_sim/faults", json={"kind": "500", "count": 1, "path": "/nowhere"})).json()
    assert refunded["order"]["refunded_fen"] == 1000
    assert len(seen["orders"][0]["refunds"]) == 1
    assert len(seen["mixed_orders"][0]["med_ins_refunds"]) == 1
    assert len(seen["nhsa"]["presettlements"][0]["refunds"]) == 1
    assert [f["path"] for f in faults_left["faults"]] == ["/nowhere"]  # the lost answer did happen


async def test_a_mixed_payment_whose_callback_was_lost_confirms_the_booking_when_the_hold_expires(
    paying: tuple[Server, GatewayHandle],
) -> None:
    """OUT-6: the med-ins callback is sent once with short retries; the hold's end polls the order instead."""
    server, gateway = paying
    booking = await held_booking(server, hold_seconds=3)
    async with httpx.AsyncClient(base_url=gateway.base_url) as sim:
        await sim.post("/_sim/config", json={"deliver_notifications": False})
        auth = (await sim.post("/_sim/nhsa/auth", json={})).json()["pay_auth_no"]
        pre = (await sim.post("/_sim/nhsa/presettle", json={
            "pay_auth_no": auth, "total_fee": 1000, "med_ins_gov_fee": 600, "med_ins_self_fee": 0,
            "med_ins_other_fee": 0, "med_ins_cash_fee": 400})).json()
        started = await pay(server, booking["booking_id"], method="mixed", insurance_fen=600, pay_auth_no=auth,
                            pay_order_id=pre["pay_order_id"])
        await sim.post(f"/_sim/orders/{started['order']['out_trade_no']}/pay", json={})
        confirmed = await until(server, booking["booking_id"], lambda b: b["status"] != "held", 40)
        notices = (await sim.get("/_sim/notifications")).json()["notifications"]
    assert confirmed["status"] == "booked" and confirmed["order"]["status"] == "paid"
    assert all(n["outcome"] != "delivered" for n in notices)


async def test_an_unpaid_mixed_order_is_looked_up_and_then_its_hold_is_released(
    paying: tuple[Server, GatewayHandle],
) -> None:
    """OUT-6: polling a created mixed order does not keep an unpaid slot."""
    server, gateway = paying
    booking = await held_booking(server, hold_seconds=3)
    async with httpx.AsyncClient(base_url=gateway.base_url) as sim:
        auth = (await sim.post("/_sim/nhsa/auth", json={})).json()["pay_auth_no"]
        pre = (await sim.post("/_sim/nhsa/presettle", json={
            "pay_auth_no": auth, "total_fee": 1000, "med_ins_gov_fee": 600, "med_ins_self_fee": 0,
            "med_ins_other_fee": 0, "med_ins_cash_fee": 400})).json()
        started = await pay(server, booking["booking_id"], method="mixed", insurance_fen=600, pay_auth_no=auth,
                            pay_order_id=pre["pay_order_id"])
        released = await until(server, booking["booking_id"], lambda b: b["status"] != "held", 40)
        with trio.fail_after(15):  # the cash part is closed by the effect after the release
            while True:
                params = {"out_trade_no": started["order"]["out_trade_no"]}
                [cash] = (await sim.get("/_sim/orders", params=params)).json()["orders"]
                if cash["trade_state"] == "CLOSED":
                    break
                await trio.sleep(0.2)
    assert released["status"] == "released" and released["order"]["status"] == "created"
