"""A hub with every outside notice channel pointed at its simulator (WeChat, Aliyun SMS, Alipay)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

from carehub.bots import alipay_sim, sms_gateway, wechat_sim
from tests.servers import Server, run_server


@dataclasses.dataclass
class Sims:
    wechat: str
    sms: str
    alipay: str

    async def get(self, which: str, path: str, **params: Any) -> Any:
        async with httpx.AsyncClient(base_url=getattr(self, which)) as http:
            answer = await http.get(path, params=params)
            assert answer.status_code == 200, answer.text
            return answer.json()

    async def post(self, which: str, path: str, body: dict[str, Any]) -> Any:
        async with httpx.AsyncClient(base_url=getattr(self, which)) as http:
            answer = await http.post(path, json=body)
            assert answer.status_code == 200, answer.text
            return answer.json()


@dataclasses.dataclass
class Hospital:
    hub: Server
    sims: Sims
    config: dict[str, Any]


async def start_sims(nursery: trio.Nursery) -> tuple[Sims, dict[str, Any]]:
    wechat = await nursery.start(functools.partial(wechat_sim.serve_wechat_sim, port=0))
    sms = await nursery.start(functools.partial(
        sms_gateway.serve_sms_gateway, access_key_id=sms_gateway.DEFAULT_ACCESS_KEY_ID,
        access_key_secret=sms_gateway.DEFAULT_ACCESS_KEY_SECRET))
    ali = await nursery.start(alipay_sim.serve_alipay_sim)
    config = {
        "wechat_url": wechat, "wechat_appid": wechat_sim.DEFAULT_APPID, "wechat_secret": wechat_sim.DEFAULT_SECRET,
        "wechat_template_id": wechat_sim.DEFAULT_TEMPLATE_ID, "wechat_event_token": wechat_sim.DEFAULT_CALLBACK_TOKEN,
        "sms_url": sms, "sms_access_key_id": sms_gateway.DEFAULT_ACCESS_KEY_ID,
        "sms_access_key_secret": sms_gateway.DEFAULT_ACCESS_KEY_SECRET,
        "alipay_url": ali.gateway_url, "alipay_app_id": ali.app_id,
        "alipay_app_private_key_pem": ali.app_private_key_pem, "alipay_public_key_pem": ali.alipay_public_key_pem,
        "alipay_template_id": ali.template_id, "channel_timeout_seconds": 1.0,
    }
    return Sims(wechat, sms, ali.base_url), config


@pytest.fixture
async def hospital(database_url: str) -> AsyncIterator[Hospital]:
    async with trio.open_nursery() as nursery:
        sims, config = await start_sims(nursery)
        async with run_server(database_url, **config) as hub:
            # the WeChat simulator pushes its TEMPLATESENDJOBFINISH events to this hub
            await sims.post("wechat", "/_sim/config",
                            {"callback_url": f"{hub.base}/api/v1/channels/wechat/events"})
            yield Hospital(hub, sims, config)
        nursery.cancel_scope.cancel()
