"""The WeChat notice channel against the WeChat simulator, over the network.

The simulator (carehub/bots/wechat_sim.py) implements WeChat's side on its own; the tests steer
it through its ``/_sim/`` control API and read what it sent there, as an operator would look at
the patients' phones. Event pushes land on a tiny HTTP endpoint started here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from carehub.bots.wechat_sim import (
    DEFAULT_APPID,
    DEFAULT_CALLBACK_TOKEN,
    DEFAULT_SECRET,
    DEFAULT_SUBSCRIBE_TEMPLATE_ID,
    DEFAULT_TEMPLATE_ID,
    NOTICE_KEYWORDS,
    SimSettings,
    serve_wechat_sim,
)
from carehub.channels.notices import ChannelError, DeliveryReport, NoticeChannel, OutgoingNotice
from carehub.channels.wechat import (
    BODY_KEY,
    EVENT_ACCEPTED,
    TIME_KEY,
    TITLE_KEY,
    InvalidEvent,
    WeChatChannel,
    WeChatConfig,
    check_signature,
    open_wechat_channel,
    parse_event,
)

OPENID = "oCareHubPatient000000000001"
PUBLIC = "https://hospital.example/app"
NOTICE = OutgoingNotice(
    kind="booking.confirmed",
    title="预约成功：心内科门诊张医生专家号",  # 17 characters: kept whole
    body="请于12月5日上午9:30前到门诊三楼心内科候诊区签到，过号需重新排队。",  # longer than 20: cut
    link="/h5/bookings?booking=B1",
)
FIXED_NOW = dt.datetime(2026, 12, 4, 1, 30, tzinfo=dt.UTC)  # 09:30 in Beijing


@pytest.fixture
async def sim(nursery: trio.Nursery) -> str:
    settings = SimSettings(callback_delay=0.02, callback_retry_seconds=(0.05, 0.05))
    url: str = await nursery.start(functools.partial(serve_wechat_sim, port=0, settings=settings))
    return url


def config(sim: str, **changes: Any) -> WeChatConfig:
    base = WeChatConfig(sim, DEFAULT_APPID, DEFAULT_SECRET, DEFAULT_TEMPLATE_ID, PUBLIC, timeout=5)
    return dataclasses.replace(base, **changes)


@pytest.fixture
async def channel(sim: str) -> AsyncIterator[WeChatChannel]:
    async with open_wechat_channel(config(sim), clock=lambda: FIXED_NOW) as wechat:
        yield wechat


@pytest.fixture
async def admin(sim: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim, timeout=5) as http:
        yield http


async def control(admin: httpx.AsyncClient, path: str, **body: Any) -> dict[str, Any]:
    response = await admin.post(path, json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def messages(admin: httpx.AsyncClient, touser: str = OPENID) -> list[dict[str, Any]]:
    response = await admin.get("/_sim/messages", params={"touser": touser})
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()["messages"]
    return found


async def token_calls(admin: httpx.AsyncClient) -> dict[str, int]:
    response = await admin.get("/_sim/tokens")
    response.raise_for_status()
    calls: dict[str, int] = response.json()["calls"]
    return calls


async def refused(send: Awaitable[Any]) -> ChannelError:
    with pytest.raises(ChannelError) as caught:
        await send
    return caught.value


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5) -> None:
    with trio.fail_after(timeout):
        while not await check():
            await trio.sleep(0.02)


@dataclasses.dataclass
class Receiver:
    """A tiny HTTP endpoint taking event pushes: (query, body) of each."""

    url: str
    pushes: trio.MemoryReceiveChannel[tuple[dict[str, str], bytes]]


@pytest.fixture
async def receiver(nursery: trio.Nursery) -> Receiver:
    send_pushes, pushes = trio.open_memory_channel[tuple[dict[str, str], bytes]](100)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (event := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        send_pushes.send_nowait((dict(parse_qsl(scope["query_string"].decode())), body))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": EVENT_ACCEPTED})

    hconfig = HypercornConfig()
    hconfig.bind = ["127.0.0.1:0"]
    hconfig.accesslog = None
    asgi: Any = app
    binds = await nursery.start(functools.partial(hypercorn_serve, asgi, hconfig))
    return Receiver(binds[0] + "/wechat/events", pushes)


# -- sending --------------------------------------------------------------------------------------


async def test_a_notice_reaches_the_follower_cut_to_20_characters_with_an_absolute_link(
    channel: WeChatChannel, admin: httpx.AsyncClient
) -> None:
    notice_channel: NoticeChannel = channel  # the adapter is a notice channel
    assert notice_channel.name == "wechat"
    receipt = await channel.send_notice(OPENID, NOTICE, idempotency_key="n1-wechat-1")

    [sent] = await messages(admin)
    assert str(sent["msgid"]) == receipt.provider_id
    assert not receipt.delivered  # WeChat reports later
    assert sent["template_id"] == DEFAULT_TEMPLATE_ID
    assert sent["client_msg_id"] == "n1-wechat-1"
    assert sent["url"] == "https://hospital.example/app/h5/bookings?booking=B1"
    assert sent["data"] == {
        TITLE_KEY: NOTICE.title,
        BODY_KEY: NOTICE.body[:20],
        TIME_KEY: "2026-12-04 09:30",
    }
    assert all(len(value) <= 20 for value in sent["data"].values())
    assert (TITLE_KEY, BODY_KEY, TIME_KEY) == NOTICE_KEYWORDS  # the simulator's template is ours


async def test_a_notice_naming_its_template_uses_it_and_a_mini_program_opens_at_the_link(
    sim: str, admin: httpx.AsyncClient
) -> None:
    await control(admin, "/_sim/templates", template_id="TplBill", keywords=list(NOTICE_KEYWORDS))
    async with open_wechat_channel(config(sim, miniprogram_appid="wxminiprogram01")) as wechat:
        await wechat.send_notice(
            OPENID, dataclasses.replace(NOTICE, template="TplBill", link="/h5/bills?bill=B7"), idempotency_key="k"
        )
    [sent] = await messages(admin)
    assert sent["template_id"] == "TplBill"
    assert sent["miniprogram"] == {"appid": "wxminiprogram01", "pagepath": "h5/bills?bill=B7"}
    assert sent["url"] == "https://hospital.example/app/h5/bills?bill=B7"


async def test_a_repeated_client_msg_id_reaches_the_patient_once(
    channel: WeChatChannel, admin: httpx.AsyncClient
) -> None:
    first = await channel.send_notice(OPENID, NOTICE, idempotency_key="n2-wechat-1")
    again = await channel.send_notice(OPENID, NOTICE, idempotency_key="n2-wechat-1")
    other = await channel.send_notice(OPENID, NOTICE, idempotency_key="n2-wechat-2")
    assert again.provider_id == first.provider_id
    assert other.provider_id != first.provider_id
    assert [m["client_msg_id"] for m in await messages(admin)] == ["n2-wechat-2", "n2-wechat-1"]
    # WeChat has no query by client_msg_id: sending again with the key is the way to find out
    assert await channel.find_sent(OPENID, "n2-wechat-1") is None
    # the key is per person, and WeChat keeps it 10 minutes only (here: no longer at all)
    await channel.send_notice("oSomeoneElse0000000000001", NOTICE, idempotency_key="n2-wechat-1")
    assert len(await messages(admin, "oSomeoneElse0000000000001")) == 1
    await control(admin, "/_sim/config", dedupe_seconds=0)
    late = await channel.send_notice(OPENID, NOTICE, idempotency_key="n2-wechat-1")
    assert late.provider_id != first.provider_id
    assert len(await messages(admin)) == 3


# -- the access token ---------------------------------------------------------------------------


async def test_the_token_is_fetched_once_for_many_concurrent_sends(
    channel: WeChatChannel, admin: httpx.AsyncClient
) -> None:
    async with trio.open_nursery() as nursery:
        for i in range(30):
            nursery.start_soon(functools.partial(channel.send_notice, OPENID, NOTICE, idempotency_key=f"many-{i}"))
    assert len(await messages(admin)) == 30
    assert (await token_calls(admin)).get("stable_token") == 1
    assert channel.token_fetches == 1


async def test_an_expired_token_is_refreshed_once_and_the_sends_go_through(
    channel: WeChatChannel, admin: httpx.AsyncClient
) -> None:
    await channel.send_notice(OPENID, NOTICE, idempotency_key="before")
    await control(admin, "/_sim/tokens/expire")
    async with trio.open_nursery() as nursery:  # all refused 42001 at once: one refresh for them
        for i in range(10):
            nursery.start_soon(functools.partial(channel.send_notice, OPENID, NOTICE, idempotency_key=f"after-{i}"))
    assert len(await messages(admin)) == 11
    calls = await token_calls(admin)
    assert calls["stable_token_issued"] == 2  # the first and one new token
    assert channel.token_fetches == 2


async def test_another_partys_token_call_makes_the_adapter_refresh_on_40001(
    sim: str, channel: WeChatChannel, admin: httpx.AsyncClient
) -> None:
    await channel.send_notice(OPENID, NOTICE, idempotency_key="a")
    # another system of the hospital fetches a token the old way: ours is no longer the latest
    params = {"grant_type": "client_credential", "appid": DEFAULT_APPID, "secret": DEFAULT_SECRET}
    other = (await admin.get("/cgi-bin/token", params=params)).json()
    assert other["expires_in"] == 7200
    await channel.send_notice(OPENID, NOTICE, idempotency_key="b")
    assert len(await messages(admin)) == 2
    assert channel.token_fetches == 2
    assert (await token_calls(admin))["stable_token_issued"] == 2


async def test_a_short_lived_token_is_renewed_before_it_expires(
    channel: WeChatChannel, admin: httpx.AsyncClient
) -> None:
    await control(admin, "/_sim/config", token_ttl=1.0)
    await channel.send_notice(OPENID, NOTICE, idempotency_key="a")
    await trio.sleep(0.95)  # past the margin (a tenth of its life), before the expiry
    await channel.send_notice(OPENID, NOTICE, idempotency_key="b")
    assert channel.token_fetches == 2
    tokens = (await admin.get("/_sim/tokens")).json()["tokens"]
    assert len(tokens) == 2  # renewed on time: no send was refused for its token


async def test_a_token_refused_again_after_refreshing_is_retryable_not_looped(
    channel: WeChatChannel, admin: httpx.AsyncClient
) -> None:
    await control(admin, "/_sim/faults", api="template", errcode=40001, count=5)
    error = await refused(channel.send_notice(OPENID, NOTICE, idempotency_key="k"))
    assert (error.code, error.retryable, error.fallback) == ("40001", True, False)
    assert channel.token_fetches == 2  # the first and one forced refresh, no more
    assert await messages(admin) == []


async def test_a_failing_token_endpoint_is_retryable_but_a_wrong_secret_is_not(
    sim: str, admin: httpx.AsyncClient
) -> None:
    async with open_wechat_channel(config(sim)) as wechat:
        await control(admin, "/_sim/faults", api="stable_token", errcode=-1)
        error = await refused(wechat.send_notice(OPENID, NOTICE, idempotency_key="k"))
        assert (error.code, error.retryable) == ("-1", True)
        await wechat.send_notice(OPENID, NOTICE, idempotency_key="k")  # the next try works
    async with open_wechat_channel(config(sim, secret="not-the-secret")) as wechat:
        error = await refused(wechat.send_notice(OPENID, NOTICE, idempotency_key="k2"))
        assert (error.code, error.retryable, error.fallback) == ("40125", False, False)
    assert len(await messages(admin)) == 1


# -- refusals -----------------------------------------------------------------------------------


async def test_someone_not_following_the_account_means_another_channel(
    channel: WeChatChannel, admin: httpx.AsyncClient
) -> None:
    await control(admin, "/_sim/followers", openid=OPENID, following=False)
    error = await refused(channel.send_notice(OPENID, NOTICE, idempotency_key="k"))
    assert (error.code, error.fallback, error.retryable) == ("43004", True, False)
    # an openid that never followed (the simulator's default: only "o..." follow)
    error = await refused(channel.send_notice("xNeverFollowed", NOTICE, idempotency_key="k"))
    assert (error.code, error.fallback) == ("43004", True)
    error = await refused(channel.send_notice("not an openid!", NOTICE, idempotency_key="k"))
    assert (error.code, error.fallback) == ("40003", True)
    assert await messages(admin) == []


async def test_busy_is_retryable_and_fail_rate_one_fails_every_send(
    channel: WeChatChannel, admin: httpx.AsyncClient
) -> None:
    await control(admin, "/_sim/faults", api="template", errcode=-1)
    error = await refused(channel.send_notice(OPENID, NOTICE, idempotency_key="k"))
    assert (error.code, error.retryable, error.fallback) == ("-1", True, False)

    await control(admin, "/_sim/config", fail_rate=1)
    for i in range(5):
        error = await refused(channel.send_notice(OPENID, NOTICE, idempotency_key=f"r{i}"))
        assert (error.code, error.retryable) == ("-1", True)
    assert await messages(admin) == []
    await control(admin, "/_sim/config", fail_rate=0)
    await channel.send_notice(OPENID, NOTICE, idempotency_key="r0")
    assert len(await messages(admin)) == 1


async def test_the_per_minute_limit_is_retryable_after_a_wait_and_the_daily_quota_falls_back(
    channel: WeChatChannel, admin: httpx.AsyncClient
) -> None:
    await control(admin, "/_sim/config", per_minute_quota=2)
    await channel.send_notice(OPENID, NOTICE, idempotency_key="a")
    await channel.send_notice(OPENID, NOTICE, idempotency_key="b")
    error = await refused(channel.send_notice(OPENID, NOTICE, idempotency_key="c"))
    assert (error.code, error.retryable, error.fallback) == ("45011", True, False)
    assert error.retry_after is not None and error.retry_after > 0
    await control(admin, "/_sim/config", per_minute_quota=None, daily_quota=2)
    error = await refused(channel.send_notice(OPENID, NOTICE, idempotency_key="c"))
    assert (error.code, error.retryable, error.fallback) == ("45009", False, True)
    assert len(await messages(admin)) == 2


async def test_template_problems_are_configuration_neither_retried_nor_fallen_back(
    channel: WeChatChannel, admin: httpx.AsyncClient
) -> None:
    error = await refused(
        channel.send_notice(OPENID, dataclasses.replace(NOTICE, template="NoSuchTpl"), idempotency_key="k")
    )
    assert (error.code, error.retryable, error.fallback) == ("40037", False, False)
    await control(admin, "/_sim/templates", template_id="TplFour", keywords=[*NOTICE_KEYWORDS, "thing4"])
    error = await refused(
        channel.send_notice(OPENID, dataclasses.replace(NOTICE, template="TplFour"), idempotency_key="k")
    )
    assert (error.code, error.retryable, error.fallback) == ("47003", False, False)
    assert "thing4" in error.message


async def test_a_provider_down_unreachable_or_silent_is_retryable(sim: str, admin: httpx.AsyncClient) -> None:
    async with open_wechat_channel(config(sim, timeout=0.5)) as wechat:
        await control(admin, "/_sim/faults", api="template", status=503)
        error = await refused(wechat.send_notice(OPENID, NOTICE, idempotency_key="k"))
        assert (error.code, error.retryable) == ("HTTP503", True)
        await control(admin, "/_sim/faults", api="template", hang=True)
        error = await refused(wechat.send_notice(OPENID, NOTICE, idempotency_key="k"))
        assert (error.code, error.retryable) == ("timeout", True)
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with open_wechat_channel(config(f"http://127.0.0.1:{port}", timeout=1)) as wechat:
        error = await refused(wechat.send_notice(OPENID, NOTICE, idempotency_key="k"))
        assert (error.code, error.retryable) == ("unreachable", True)


async def test_a_send_whose_answer_was_lost_is_sent_again_safely_with_its_key(
    sim: str, admin: httpx.AsyncClient
) -> None:
    async with open_wechat_channel(config(sim, timeout=0.5)) as wechat:
        await control(admin, "/_sim/faults", api="template", hang=True, accept=True)
        error = await refused(wechat.send_notice(OPENID, NOTICE, idempotency_key="lost-1"))
        assert (error.code, error.retryable) == ("timeout", True)
        receipt = await wechat.send_notice(OPENID, NOTICE, idempotency_key="lost-1")  # the notifier's retry
    [sent] = await messages(admin)  # WeChat took the first one; the retry reached nobody again
    assert str(sent["msgid"]) == receipt.provider_id


async def test_slow_answers_still_arrive(channel: WeChatChannel, admin: httpx.AsyncClient) -> None:
    await control(admin, "/_sim/config", slow_ms=200)
    start = trio.current_time()
    await channel.send_notice(OPENID, NOTICE, idempotency_key="k")
    assert trio.current_time() - start >= 0.2
    assert len(await messages(admin)) == 1


# -- subscribe messages -------------------------------------------------------------------------


async def test_a_subscribe_message_uses_up_the_grants_the_user_gave(
    channel: WeChatChannel, admin: httpx.AsyncClient
) -> None:
    tpl = DEFAULT_SUBSCRIBE_TEMPLATE_ID
    error = await refused(channel.send_subscribe(OPENID, NOTICE, template_id=tpl))
    assert (error.code, error.fallback) == ("43101", True)
    await control(admin, "/_sim/grants", openid=OPENID, template_id=tpl, count=1)
    receipt = await channel.send_subscribe(OPENID, NOTICE, template_id=tpl)
    [sent] = await messages(admin)
    assert (sent["kind"], str(sent["msgid"])) == ("subscribe", receipt.provider_id)
    assert sent["page"] == "h5/bookings?booking=B1"
    assert sent["data"][BODY_KEY] == NOTICE.body[:20]  # cut here, or WeChat would refuse it (47003)
    error = await refused(channel.send_subscribe(OPENID, NOTICE, template_id=tpl))
    assert (error.code, error.fallback) == ("43101", True)


# -- events ---------------------------------------------------------------------------------------


async def test_the_outcome_arrives_as_a_signed_templatesendjobfinish_push(
    channel: WeChatChannel, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    await control(admin, "/_sim/config", callback_url=receiver.url)
    blocking = "oCareHubPatientWhoBlocks0001"
    await control(admin, "/_sim/followers", openid=blocking, following=True, blocks=True)
    delivered = await channel.send_notice(OPENID, NOTICE, idempotency_key="e1")
    blocked = await channel.send_notice(blocking, NOTICE, idempotency_key="e2")

    reports: dict[str, DeliveryReport] = {}
    with trio.fail_after(5):
        for _ in range(2):
            query, body = await receiver.pushes.receive()
            assert check_signature(DEFAULT_CALLBACK_TOKEN, query["timestamp"], query["nonce"], query["signature"])
            assert not check_signature("another-token", query["timestamp"], query["nonce"], query["signature"])
            report = parse_event(body)
            assert report is not None
            reports[report.provider_id] = report
    assert reports[delivered.provider_id] == DeliveryReport("wechat", delivered.provider_id, True, "success")
    assert reports[blocked.provider_id] == DeliveryReport("wechat", blocked.provider_id, False, "failed:user block")

    async def accepted() -> bool:
        pushes = (await admin.get("/_sim/callbacks")).json()["callbacks"]
        return len(pushes) == 2 and all(p.get("outcome") == "accepted" for p in pushes)

    await eventually(accepted)
    statuses = {str(m["msgid"]): m["status"] for m in await messages(admin)}
    assert statuses[delivered.provider_id] == "success"


async def test_dropped_callbacks_never_arrive(
    channel: WeChatChannel, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    await control(admin, "/_sim/config", callback_url=receiver.url, drop_callbacks=True)
    await channel.send_notice(OPENID, NOTICE, idempotency_key="d1")

    async def settled() -> bool:
        return [c["outcome"] for c in (await admin.get("/_sim/callbacks")).json()["callbacks"]] == ["dropped"]

    await eventually(settled)
    with trio.move_on_after(0.2):
        await receiver.pushes.receive()
        pytest.fail("a dropped callback arrived")


async def test_a_subscribe_outcome_arrives_as_subscribe_msg_sent_event(
    channel: WeChatChannel, admin: httpx.AsyncClient, receiver: Receiver
) -> None:
    await control(admin, "/_sim/config", callback_url=receiver.url)
    await control(admin, "/_sim/grants", openid=OPENID, template_id=DEFAULT_SUBSCRIBE_TEMPLATE_ID, count=1)
    receipt = await channel.send_subscribe(OPENID, NOTICE, template_id=DEFAULT_SUBSCRIBE_TEMPLATE_ID)
    with trio.fail_after(5):
        _, body = await receiver.pushes.receive()
    assert parse_event(body) == DeliveryReport("wechat", receipt.provider_id, True, "success")


def test_check_signature_is_sha1_of_the_sorted_token_timestamp_and_nonce() -> None:
    token, timestamp, nonce = "carehub", "1733300000", "482916"
    expected = hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()
    assert check_signature(token, timestamp, nonce, expected)
    assert check_signature(token, timestamp, nonce, expected.upper())
    assert not check_signature(token, timestamp, "482917", expected)
    assert not check_signature(token, timestamp, nonce, "")


def test_parse_event_reads_wechats_xml_and_skips_other_events() -> None:
    event = (
        b"<xml><ToUserName><![CDATA[gh_7f083739789a]]></ToUserName>"
        b"<FromUserName><![CDATA[oia2TjuEGTNoeX76QEjQNrcURxG8]]></FromUserName>"
        b"<CreateTime>1395658920</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        b"<Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>200163836</MsgID>"
        b"<Status><![CDATA[failed: system failed]]></Status></xml>"
    )
    assert parse_event(event) == DeliveryReport("wechat", "200163836", False, "failed: system failed")
    follow = (
        b"<xml><ToUserName>gh_1</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime>"
        b"<MsgType>event</MsgType><Event>subscribe</Event></xml>"
    )
    assert parse_event(follow) is None
    text = b"<xml><MsgType>text</MsgType><Content>hi</Content></xml>"
    assert parse_event(text) is None
    for bad in (
        b"not xml",
        b"<json/>",
        b'<!DOCTYPE xml [<!ENTITY a "aaaa">]><xml><MsgType>&a;</MsgType></xml>',
        b"<xml><MsgType>event</MsgType><Event>TEMPLATESENDJOBFINISH</Event></xml>",
    ):
        with pytest.raises(InvalidEvent):
            parse_event(bad)


# -- the control API ----------------------------------------------------------------------------


async def test_the_control_api_answers_bad_input_with_400(admin: httpx.AsyncClient) -> None:
    assert (await admin.post("/_sim/config", json={"fail_rate": 2})).status_code == 400
    assert (await admin.post("/_sim/config", content=b"{not json")).status_code == 400
    assert (await admin.post("/_sim/followers", json={"following": False})).status_code == 400
    assert (await admin.post("/_sim/grants", json={"openid": "o1", "count": "many"})).status_code == 400
    assert (await admin.post("/_sim/faults", json={"api": "nope"})).status_code == 400
    assert (await admin.get("/_sim/nothing")).status_code == 404


async def test_reset_forgets_messages_tokens_and_settings(channel: WeChatChannel, admin: httpx.AsyncClient) -> None:
    await channel.send_notice(OPENID, NOTICE, idempotency_key="a")
    await control(admin, "/_sim/config", fail_rate=1)
    await control(admin, "/_sim/reset")
    assert await messages(admin) == []
    # the adapter's token is unknown now (40014): it fetches a new one and the send goes out
    await channel.send_notice(OPENID, NOTICE, idempotency_key="a")
    assert len(await messages(admin)) == 1
    assert channel.token_fetches == 2
