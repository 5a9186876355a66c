"""Clinical alerts (MSG-7, DOC-19): the HIS/LIS posts a FHIR DiagnosticReport (signed partner route);
doctors see and acknowledge their alerts; ops see every open alert and its age. docs/clinical-alerts.md."""

from __future__ import annotations

from typing import Any

import msgspec
from quart import request

from carehub.messaging import MessageCenter

from ..errors import ApiError
from ..routing import Answer, RequestContext, RouteDecorator


class RaisedView(msgspec.Struct):
    #: one alert per critical Observation; empty when nothing in the report was critical (HH/LL)
    alert_ids: list[str]


class ContactView(msgspec.Struct):
    account_id: str
    name: str
    alerted: bool


class StepView(msgspec.Struct):
    seq: int
    at: str
    action: str  # raised, notified, escalated, acknowledged, unanswered
    account_id: str | None
    name: str | None
    note: str


class AlertView(msgspec.Struct):
    id: str
    kind: str
    status: str  # open, escalated, acknowledged, unanswered
    patient_id: str
    patient_label: str
    item: str
    value: str
    flag: str
    department_id: str
    department: str
    level: int
    current_account_id: str
    current_name: str
    contacts: list[ContactView]
    ack_seconds: int
    raised_at: str
    deadline_at: str | None
    age_seconds: int
    acked_by: str | None
    acked_by_name: str | None
    acked_at: str | None
    ack_device: str | None
    steps: list[StepView]


class AlertsView(msgspec.Struct):
    items: list[AlertView]


class AckBody(msgspec.Struct, forbid_unknown_fields=True):
    """确认收到: the id of the device (a per-browser id the workstation keeps)."""

    device: str


class AckView(msgspec.Struct):
    alert_id: str
    status: str
    acked_by: str | None
    acked_by_name: str | None
    acked_at: str | None
    device: str | None


def register(r: RouteDecorator, *, messaging: MessageCenter) -> None:
    alerts = messaging.alerts

    @r("POST", "/api/v1/open/fhir/DiagnosticReport", summary="HIS/LIS: a FHIR R4 DiagnosticReport; critical "
       "values (HH/LL) raise clinical alerts (signed)", permission=None, tag="open", partner_op="alerts.raise",
       response=RaisedView, status=202)
    async def post_report(ctx: RequestContext) -> Any:
        assert ctx.partner is not None
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type not in ("application/fhir+json", "application/json"):
            raise ApiError(415, "unsupported_type", "请以 application/fhir+json 发送 DiagnosticReport")
        raw = await request.get_data(cache=True)
        assert isinstance(raw, bytes)
        ids = await alerts.raise_from_report(raw, source=ctx.partner.account_id)
        # 202: the alerts are under way (notices, escalation); 200 when nothing was critical
        return Answer({"alert_ids": ids}, 202 if ids else 200)

    @r("GET", "/api/v1/doctor/alerts", summary="My open clinical alerts (as a contact), with escalation and steps",
       permission="clinic.queue", tag="doctor", response=AlertsView)
    async def my_alerts(ctx: RequestContext) -> Any:
        assert ctx.principal is not None
        return {"items": await alerts.mine(ctx.principal.account_id)}

    @r("GET", "/api/v1/doctor/alerts/<alert_id>", summary="One clinical alert I was alerted on (with the ack proof)",
       permission="clinic.queue", tag="doctor", response=AlertView)
    async def one_alert(ctx: RequestContext, alert_id: str) -> Any:
        assert ctx.principal is not None
        alert = await alerts.one(alert_id)
        if ctx.principal.account_id not in {c["account_id"] for c in alert["contacts"] if c["alerted"]}:
            raise ApiError(404, "alert_not_found", "没有这条警报")
        return alert

    @r("POST", "/api/v1/doctor/alerts/<alert_id>/ack", summary="确认收到: acknowledge a clinical alert from a device",
       permission="clinic.queue", body=AckBody, tag="doctor", response=AckView)
    async def ack_alert(ctx: RequestContext, body: AckBody, alert_id: str) -> Any:
        assert ctx.principal is not None
        if not body.device.strip() or len(body.device) > 64:
            raise ApiError(422, "invalid", "device 应为 1 到 64 个字符的设备标识")
        reply = await alerts.acknowledge(alert_id, ctx.principal.account_id, ctx.principal.roles, body.device)
        return {"alert_id": alert_id, "status": reply["status"], "acked_by": reply["acked_by"],
                "acked_by_name": reply["acked_by_name"], "acked_at": reply["acked_at"], "device": reply["device"]}

    @r("GET", "/api/v1/ops/alerts", summary="Open clinical alerts and their age", permission="ops.view", tag="ops",
       response=AlertsView)
    async def ops_alerts(ctx: RequestContext) -> Any:
        return {"items": await alerts.open_alerts()}
