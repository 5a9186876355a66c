"""The HIS adapter's charges and orders against the FHIR simulator: ChargeItem, ServiceRequest (OUT-13, OUT-14)."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

from carehub.bots.his_sim import HisHandle, serve_his
from carehub.channels.his import BEIJING, HisClient, HisConfig, SelfServiceOrder, fen

TOKEN = "his-charges-token"
ORDER = SelfServiceOrder(
    order_id="o1", bill_id="self-o1", patient_id="P1", code="CBC", name="血常规", category="lab", amount_fen=2550,
    created=dt.datetime(2026, 11, 25, 9, 0, tzinfo=BEIJING), paid_by="BILL-0123456789abcdef0123", status="active",
)


@pytest.fixture
async def his(nursery: trio.Nursery) -> HisHandle:
    handle: HisHandle = await nursery.start(functools.partial(serve_his, port=0, token=TOKEN, hang_seconds=5))
    return handle


@pytest.fixture
async def client(his: HisHandle) -> AsyncIterator[HisClient]:
    async with HisClient(HisConfig(his.base_url, TOKEN, timeout_seconds=2)) as c:
        yield c


async def seed(his: HisHandle, **body: Any) -> list[str]:
    async with httpx.AsyncClient(base_url=his.admin_url) as admin:
        response = await admin.post("/_sim/charges", json=body)
    assert response.status_code == 201, response.text
    return [c["id"] for c in response.json()["charges"]]


async def stored(his: HisHandle, path: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=his.admin_url) as admin:
        answer = (await admin.get(path)).json()
    return list(next(iter(answer.values())))


async def test_a_patients_charge_items_are_read_with_visit_slip_and_amount_in_fen(
    his: HisHandle, client: HisClient,
) -> None:
    [charge_id] = await seed(his, patient_id="P1", visit_id="b" * 24, slip="ServiceRequest/SR9",
                             items=[{"code": "CT01", "name": "胸部CT平扫", "amount_fen": 12345, "quantity": 2}])
    await seed(his, patient_id="P2", items=[{"code": "X", "name": "别人的", "amount_fen": 100}])
    [charge] = await client.charge_items("P1")
    assert (charge.his_id, charge.status, charge.name, charge.quantity, charge.amount_fen) == (
        charge_id, "billable", "胸部CT平扫", 2, 12345)
    assert (charge.visit_id, charge.slip, charge.patient_id) == ("b" * 24, "ServiceRequest/SR9", "P1")


async def test_many_charges_are_read_across_search_pages(his: HisHandle, client: HisClient) -> None:
    await seed(his, patient_id="P1", items=[{"code": f"C{i}", "name": f"项目{i}", "amount_fen": i + 1}
                                            for i in range(130)])
    charges = await client.charge_items("P1")
    assert len(charges) == 130 and sum(c.amount_fen for c in charges) == sum(range(1, 131))


async def test_marking_a_charge_billed_twice_writes_one_new_version(his: HisHandle, client: HisClient) -> None:
    [charge_id] = await seed(his, patient_id="P1", items=[{"code": "L1", "name": "肝功能", "amount_fen": 6000}])
    first = await client.set_charge_status(charge_id, "billed", payment="BILL-1")
    second = await client.set_charge_status(charge_id, "billed", payment="BILL-1")
    [row] = await stored(his, "/_sim/charges")
    assert (first.status, first.payment, second.version, row["version"]) == ("billed", "BILL-1", "2", "2")


async def test_a_self_service_order_pushed_twice_is_one_service_request_and_one_charge(
    his: HisHandle, client: HisClient,
) -> None:
    for _ in range(2):
        request_id = await client.push_service_request(ORDER)
        await client.push_charge_item(ORDER, request_id)
    [request] = await stored(his, "/_sim/service-requests")
    [charge] = await stored(his, "/_sim/charges")
    assert request["version"] == "1" and request["resource"]["status"] == "active"
    assert charge["resource"]["supportingInformation"] == [{"reference": f"ServiceRequest/{request_id}"}]
    assert fen(charge["resource"]["priceOverride"]["value"]) == 2550 and charge["resource"]["status"] == "billed"
    assert [c.bill_id for c in await client.charge_items("P1")] == ["self-o1"]


async def test_the_his_refuses_a_status_outside_the_r4_value_set_and_a_stale_version(his: HisHandle) -> None:
    [charge_id] = await seed(his, patient_id="P1", items=[{"code": "L1", "name": "肝功能", "amount_fen": 6000}])
    headers = {"authorization": f"Bearer {TOKEN}", "content-type": "application/fhir+json"}
    async with httpx.AsyncClient(base_url=his.base_url, headers=headers) as fhir:
        current = (await fhir.get(f"/ChargeItem/{charge_id}")).json()
        invalid = await fhir.put(f"/ChargeItem/{charge_id}", json=current | {"status": "paid"})
        stale = await fhir.put(f"/ChargeItem/{charge_id}", json=current | {"status": "billed"},
                               headers={"if-match": 'W/"0"'})
    assert invalid.status_code == 422 and "ChargeItem.status" in invalid.text
    assert stale.status_code == 412
