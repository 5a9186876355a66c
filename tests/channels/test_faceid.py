"""The FaceID channel against the FaceID simulator (carehub/bots/faceid_sim.py), over real HTTP.

Only synthetic identities: made-up names and ID numbers that merely carry a valid GB 11643 check
digit, computed here.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import trio

from carehub.bots.faceid_sim import serve_faceid_sim
from carehub.channels.faceid import (
    FaceIdAuthFailed,
    FaceIdChannel,
    FaceIdConfig,
    FaceIdRejected,
    FaceIdTokenExpired,
    FaceIdTokenNotFound,
    FaceIdUnavailable,
    FaceOutcome,
    open_faceid_channel,
    tc3_headers,
    tc3_signature,
)

SECRET_ID = "AKIDcarehubTestsFaceId00000000000001"
SECRET_KEY = "carehub-tests-faceid-secret-key"
RULE_ID = "1"
RETURN_URL = "https://carehub.example/patient/realname/face-return"
THREE_DAYS = 3 * 24 * 3600

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id_number(region: str = "110105", birth: str = "19900307", sequence: str = "123") -> str:
    """A synthetic resident ID number with a valid GB 11643 check digit."""
    first17 = region + birth + sequence
    return first17 + "10X98765432"[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


WANG = ("测试王一", id_number(sequence="011"))
LI = ("测试李二", id_number(birth="19850612", sequence="022"))


@pytest.fixture
async def sim() -> AsyncIterator[str]:
    """The simulator's base URL (port 0)."""
    async with trio.open_nursery() as nursery:
        with trio.fail_after(10):
            base = await nursery.start(functools.partial(serve_faceid_sim, secret_id=SECRET_ID, secret_key=SECRET_KEY))
        yield base
        nursery.cancel_scope.cancel()


def config(base: str, **overrides: Any) -> FaceIdConfig:
    values: dict[str, Any] = {
        "endpoint": base,
        "secret_id": SECRET_ID,
        "secret_key": SECRET_KEY,
        "rule_id": RULE_ID,
        "redirect_url": RETURN_URL,
        "timeout_seconds": 5.0,
    }
    values.update(overrides)
    return FaceIdConfig(**values)


@pytest.fixture
async def faceid(sim: str) -> AsyncIterator[FaceIdChannel]:
    async with open_faceid_channel(config(sim)) as channel:
        yield channel


async def admin(base: str, path: str, body: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=base) as http:
        response = await http.post(path, json=body)
    assert response.status_code == 200, response.text


async def do_face_check(url: str) -> httpx.Response:
    """The person opens the H5 page and finishes the face check."""
    async with httpx.AsyncClient() as http:
        return await http.get(url)


async def raw_call(base: str, headers: dict[str, str], payload: bytes) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        response = await http.post(base + "/", content=payload, headers=headers)
    assert response.status_code == 200
    return dict(orjson.loads(response.content)["Response"])


# -- signing (no I/O) ----------------------------------------------------------------------------


def test_the_signature_matches_tencent_clouds_published_example() -> None:
    payload = rb'{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}'
    signature = tc3_signature(
        secret_key="Gu5t9xGARNpq86cd98joQYCN3*******",
        service="cvm",
        host="cvm.tencentcloudapi.com",
        payload=payload,
        timestamp=1551113065,
    )
    assert signature == "2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"


def test_the_synthetic_id_numbers_carry_the_gb_11643_check_digit_of_the_standards_example() -> None:
    assert id_number(birth="19491231", sequence="002") == "11010519491231002X"


# -- the face check ------------------------------------------------------------------------------


async def test_a_person_who_completes_the_face_check_passes(faceid: FaceIdChannel) -> None:
    with trio.fail_after(10):
        session = await faceid.start(*WANG)
        await do_face_check(session.url)
        result = await faceid.result(session.biz_token)
    assert result.passed
    assert result.outcome is FaceOutcome.PASSED
    assert result.reason_code == 0
    assert result.similarity is not None and result.similarity >= 80
    assert (result.name, result.id_number) == WANG


async def test_the_face_check_page_sends_the_person_back_to_carehub_with_the_token(faceid: FaceIdChannel) -> None:
    with trio.fail_after(10):
        session = await faceid.start(*WANG)
        page = await do_face_check(session.url)
    assert page.status_code == 302
    assert page.headers["location"] == f"{RETURN_URL}?token={session.biz_token}"


async def test_a_person_who_has_not_finished_the_face_check_is_pending(faceid: FaceIdChannel) -> None:
    with trio.fail_after(10):
        session = await faceid.start(*WANG)
        result = await faceid.result(session.biz_token)
    assert result.pending
    assert not result.passed
    assert result.reason_code == 17


async def test_the_result_carries_the_reference_carehub_gave_at_the_start(faceid: FaceIdChannel) -> None:
    with trio.fail_after(10):
        session = await faceid.start(*WANG, extra="realname/rv-0001")
        await do_face_check(session.url)
        result = await faceid.result(session.biz_token)
    assert result.extra == "realname/rv-0001"


async def test_a_failed_liveness_check_is_not_passed_and_says_why(sim: str, faceid: FaceIdChannel) -> None:
    with trio.fail_after(10):
        await admin(sim, "/_sim/script", {"id_number": WANG[1], "outcome": "liveness_fail"})
        session = await faceid.start(*WANG)
        await do_face_check(session.url)
        result = await faceid.result(session.biz_token)
    assert result.outcome is FaceOutcome.FAILED
    assert (result.reason_code, result.live_status) == (1002, 1002)
    assert result.reason == "疑似非真人录制"


async def test_a_face_too_unlike_the_id_photo_is_not_passed_and_says_why(sim: str, faceid: FaceIdChannel) -> None:
    with trio.fail_after(10):
        await admin(sim, "/_sim/script", {"id_number": WANG[1], "outcome": "low_similarity"})
        session = await faceid.start(*WANG)
        await do_face_check(session.url)
        result = await faceid.result(session.biz_token)
    assert result.outcome is FaceOutcome.FAILED
    assert result.reason_code == 2016
    assert result.similarity == pytest.approx(43.18)
    assert "相似度未达到通过阈值" in result.reason


async def test_a_name_that_does_not_match_the_id_number_is_not_passed_and_says_why(
    sim: str, faceid: FaceIdChannel
) -> None:
    with trio.fail_after(10):
        await admin(sim, "/_sim/script", {"id_number": WANG[1], "outcome": "mismatch"})
        session = await faceid.start(*WANG)
        await do_face_check(session.url)
        result = await faceid.result(session.biz_token)
    assert result.outcome is FaceOutcome.FAILED
    assert result.reason_code == 2006
    assert "姓名和身份证号不匹配" in result.reason


async def test_a_provider_pass_below_carehubs_similarity_threshold_is_not_passed(
    sim: str, faceid: FaceIdChannel
) -> None:
    with trio.fail_after(10):
        await admin(sim, "/_sim/script", {"id_number": WANG[1], "outcome": "pass", "sim": 75.0})
        session = await faceid.start(*WANG)
        await do_face_check(session.url)
        result = await faceid.result(session.biz_token)
    assert result.outcome is FaceOutcome.FAILED
    assert result.reason_code == 2016
    assert "75.00" in result.reason and "80" in result.reason


async def test_a_failure_scripted_for_one_token_leaves_other_people_passing(sim: str, faceid: FaceIdChannel) -> None:
    with trio.fail_after(10):
        failing = await faceid.start(*WANG)
        passing = await faceid.start(*LI)
        await admin(sim, "/_sim/script", {"biz_token": failing.biz_token, "outcome": "mismatch"})
        await do_face_check(failing.url)
        await do_face_check(passing.url)
        results = [await faceid.result(failing.biz_token), await faceid.result(passing.biz_token)]
    assert [r.passed for r in results] == [False, True]


# -- tokens ----------------------------------------------------------------------------------


async def test_a_token_older_than_three_days_raises_token_expired(sim: str, faceid: FaceIdChannel) -> None:
    with trio.fail_after(10):
        session = await faceid.start(*WANG)
        await do_face_check(session.url)
        await admin(sim, "/_sim/clock", {"advance_seconds": THREE_DAYS + 1})
        with pytest.raises(FaceIdTokenExpired) as caught:
            await faceid.result(session.biz_token)
    assert not caught.value.retryable


async def test_a_token_the_provider_never_issued_raises_token_not_found(faceid: FaceIdChannel) -> None:
    with trio.fail_after(10), pytest.raises(FaceIdTokenNotFound):
        await faceid.result("00000000-0000-4000-8000-000000000000")


async def test_an_id_number_with_a_wrong_check_digit_is_refused_and_not_retryable(faceid: FaceIdChannel) -> None:
    bad = WANG[1][:17] + ("0" if WANG[1][17] != "0" else "1")
    with trio.fail_after(10), pytest.raises(FaceIdRejected) as caught:
        await faceid.start(WANG[0], bad)
    assert not caught.value.retryable


# -- signatures --------------------------------------------------------------------------------


def signed(
    base: str, payload: bytes, *, secret_id: str = SECRET_ID, secret_key: str = SECRET_KEY, age: int = 0
) -> dict[str, str]:
    return tc3_headers(
        secret_id=secret_id,
        secret_key=secret_key,
        host=httpx.URL(base).netloc.decode(),
        action="GetDetectInfoEnhanced",
        payload=payload,
        timestamp=int(time.time()) - age,
    )


PAYLOAD = orjson.dumps({"BizToken": "00000000-0000-4000-8000-000000000000", "RuleId": RULE_ID, "InfoType": "0"})


async def test_a_correctly_signed_request_reaches_the_provider(sim: str) -> None:
    with trio.fail_after(10):
        response = await raw_call(sim, signed(sim, PAYLOAD), PAYLOAD)
    assert response["Error"]["Code"] == "InvalidParameterValue.BizTokenIllegal"


async def test_a_request_signed_with_the_wrong_secret_key_is_refused(sim: str) -> None:
    with trio.fail_after(10):
        response = await raw_call(sim, signed(sim, PAYLOAD, secret_key="not-the-key"), PAYLOAD)
    assert response["Error"]["Code"] == "AuthFailure.SignatureFailure"


async def test_a_request_whose_body_was_changed_after_signing_is_refused(sim: str) -> None:
    tampered = PAYLOAD.replace(b'"InfoType":"0"', b'"InfoType":"1"')
    with trio.fail_after(10):
        response = await raw_call(sim, signed(sim, PAYLOAD), tampered)
    assert response["Error"]["Code"] == "AuthFailure.SignatureFailure"


async def test_a_request_with_a_timestamp_older_than_five_minutes_is_refused(sim: str) -> None:
    with trio.fail_after(10):
        response = await raw_call(sim, signed(sim, PAYLOAD, age=301), PAYLOAD)
    assert response["Error"]["Code"] == "AuthFailure.SignatureExpire"


async def test_a_request_from_an_unknown_secret_id_is_refused(sim: str) -> None:
    with trio.fail_after(10):
        response = await raw_call(sim, signed(sim, PAYLOAD, secret_id="AKIDsomebodyElse000000000000000000"), PAYLOAD)
    assert response["Error"]["Code"] == "AuthFailure.SecretIdNotFound"


async def test_a_channel_with_the_wrong_secret_key_raises_a_non_retryable_auth_error(sim: str) -> None:
    with trio.fail_after(10):
        async with open_faceid_channel(config(sim, secret_key="not-the-key")) as channel:
            with pytest.raises(FaceIdAuthFailed) as caught:
                await channel.start(*WANG)
    assert caught.value.code == "AuthFailure.SignatureFailure"
    assert not caught.value.retryable


# -- the provider in trouble -------------------------------------------------------------------------


async def test_a_provider_internal_error_is_retryable_and_a_retry_succeeds(sim: str, faceid: FaceIdChannel) -> None:
    with trio.fail_after(10):
        await admin(sim, "/_sim/fault", {"code": "InternalError", "count": 1})
        with pytest.raises(FaceIdUnavailable) as caught:
            await faceid.start(*WANG)
        session = await faceid.start(*WANG)
    assert caught.value.retryable
    assert caught.value.code == "InternalError"
    assert session.biz_token


async def test_a_gateway_error_page_instead_of_the_providers_json_is_retryable(sim: str, faceid: FaceIdChannel) -> None:
    with trio.fail_after(10):
        await admin(sim, "/_sim/fault", {"http_status": 502})
        with pytest.raises(FaceIdUnavailable) as caught:
            await faceid.start(*WANG)
    assert caught.value.retryable


async def test_an_unreachable_provider_is_retryable() -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there any more: connections are refused
    with trio.fail_after(10):
        async with open_faceid_channel(config(f"http://127.0.0.1:{port}")) as channel:
            with pytest.raises(FaceIdUnavailable) as caught:
                await channel.result("00000000-0000-4000-8000-000000000000")
    assert caught.value.retryable
