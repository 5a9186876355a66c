"""Providers' word on notices they accepted: WeChat event pushes and Aliyun SMS delivery reports (MSG-1).

Each report is stored on its notice (``notices.report``: delivered, or failed with the carrier's
reason) for ops and the publish API's status; pushes are answered as each provider expects, so
they are not pushed again, and repeated pushes are harmless (the same columns are set again).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from quart import Response, request

from carehub.channels.sms import RECEIPT_ACCEPTED, InvalidReceipt, parse_receipts, sms_report
from carehub.channels.wechat import EVENT_ACCEPTED, InvalidEvent, check_signature, parse_event
from carehub.config import Config
from carehub.messaging import MessageCenter

from ..errors import ApiError
from ..routing import RequestContext, RouteDecorator

log = logging.getLogger("carehub.messaging")


def register(r: RouteDecorator, *, messaging: MessageCenter, config: Config) -> None:
    def signed() -> None:
        args = request.args
        if not config.wechat_event_token:
            raise ApiError(404, "not_configured", "no WeChat service account is configured on this hub")
        if not check_signature(config.wechat_event_token, args.get("timestamp", ""), args.get("nonce", ""),
                               args.get("signature", "")):
            raise ApiError(401, "bad_signature", "signature does not match the event token")

    @r("GET", "/api/v1/channels/wechat/events", summary="WeChat: the server-URL check (echostr)",
       permission=None, tag="channels", query=("signature", "timestamp", "nonce", "echostr"))
    async def wechat_check(ctx: RequestContext) -> Any:
        signed()
        return Response(request.args.get("echostr", ""), content_type="text/plain")

    @r("POST", "/api/v1/channels/wechat/events", summary="WeChat: event pushes (TEMPLATESENDJOBFINISH)",
       permission=None, tag="channels", query=("signature", "timestamp", "nonce"))
    async def wechat_event(ctx: RequestContext) -> Any:
        signed()
        raw = await request.get_data(cache=False)
        assert isinstance(raw, bytes)
        try:
            report = parse_event(raw)
        except InvalidEvent as err:
            raise ApiError(400, "bad_request", f"not a WeChat event: {err}") from None
        if report is not None:
            await messaging.notices.report("wechat", report.provider_id, report.delivered, report.reason,
                                           dt.datetime.now(dt.UTC))
        return Response(EVENT_ACCEPTED, content_type="text/plain")

    @r("POST", "/api/v1/channels/sms/reports", summary="Aliyun SMS: delivery reports (SmsReport push)",
       permission=None, tag="channels")
    async def sms_reports(ctx: RequestContext) -> Any:
        raw = await request.get_data(cache=False)
        assert isinstance(raw, bytes)
        try:
            reports = [sms_report(item) for item in parse_receipts(raw)]
        except InvalidReceipt as err:
            raise ApiError(400, "bad_request", f"not an SMS report push: {err}") from None
        now = dt.datetime.now(dt.UTC)
        for report in reports:
            await messaging.notices.report("sms", report.provider_id, report.delivered, report.reason, now)
        return Response(RECEIPT_ACCEPTED, content_type="application/json")
