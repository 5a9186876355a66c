"""Fixtures for outpatient tests: a hospital with the WeChat Pay and HIS simulators beside the hub."""

from __future__ import annotations

import dataclasses
import functools
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import trio

from carehub.bots.his_sim import HisHandle, serve_his
from carehub.bots.pay_gateway import GatewayHandle, GatewaySettings, SimKeys, generate_keys, serve_pay_gateway

from ..servers import Server, run_server

SETTINGS = GatewaySettings(refund_seconds=0.2, notify_time_scale=0.01)
HIS_TOKEN = "his-bills-test-token"


@pytest.fixture(scope="session")
def bill_keys() -> SimKeys:
    return generate_keys()


@dataclasses.dataclass
class Hospital:
    server: Server
    gateway: GatewayHandle
    his: HisHandle

    def sim(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.gateway.base_url, timeout=30)

    def his_admin(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.his.admin_url, timeout=30)


@pytest.fixture
async def hospital(database_url: str, nursery: trio.Nursery, bill_keys: SimKeys) -> AsyncIterator[Hospital]:
    gateway: GatewayHandle = await nursery.start(functools.partial(
        serve_pay_gateway, port=0, settings=SETTINGS, keys=bill_keys))
    his: HisHandle = await nursery.start(functools.partial(serve_his, port=0, token=HIS_TOKEN, hang_seconds=5))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with trio.fail_after(120):
        async with run_server(
            database_url, port=port, his_url=his.base_url, his_token=his.token,
            pay_url=gateway.base_url, pay_mchid=gateway.mchid, pay_appid=gateway.appid,
            pay_merchant_serial=gateway.merchant_serial, pay_merchant_key_pem=gateway.merchant_private_key_pem,
            pay_platform_key_id=gateway.platform_key_id, pay_platform_public_key_pem=gateway.platform_public_key_pem,
            pay_apiv3_key=gateway.apiv3_key, pay_notify_url=f"http://127.0.0.1:{port}/api/v1/payments/wechat/notify",
        ) as server:
            yield Hospital(server, gateway, his)
