"""Clinical alerts (MSG-7, DOC-19): a critical value from the HIS/LIS becomes an alert a doctor must
acknowledge, escalating to the department's on-call doctor and then its head. See docs/clinical-alerts.md.

:class:`ClinicalAlerts` turns a FHIR R4 ``DiagnosticReport`` into one ``alert/<id>`` actor
(:mod:`carehub.actors.alert`) per critical Observation (interpretation ``HH`` or ``LL`` of
http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation), with its chain of contacts:

1. the responsible doctor: the report's ``resultsInterpreter``, else its ``performer`` (the
   first ``Practitioner/<account id>`` reference that is a CareHub doctor), else the doctor of the
   patient's latest active booking today;
2. the department's on-call doctors, then its head(s) (``department_contacts``), minus anyone
   already in the chain.

The alert's id is derived from the report (its ``id``/``identifier``, the partner and the
Observation), so the same report sent twice raises nothing new. The same actor carries any other
kind that needs an acknowledgement (``consultation.waiting``): :meth:`ClinicalAlerts.raise_alert`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import msgspec
import orjson

from carehub.actors.alert import Acknowledge, GetAlert, Raise, Unanswered
from carehub.errors import Invalid, NotFound
from carehub.hub import Caller, Context, Effect, Hub, make_address
from carehub.storage.messaging import AlertStore

from .kinds import KINDS

INTERPRETATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
#: the critical interpretations and how a notice words them
CRITICAL_FLAGS = {"HH": "危急高值", "LL": "危急低值"}
REPORT_STATUSES = frozenset({"registered", "partial", "preliminary", "final", "amended", "corrected", "appended",
                             "cancelled", "entered-in-error", "unknown"})
#: a report in these states carries no result to act on
VOID_STATUSES = frozenset({"registered", "cancelled", "entered-in-error"})
BEIJING = ZoneInfo("Asia/Shanghai")

#: patient id -> the label shown (masked name), None when no such patient (injected by app.py)
PatientLabel = Callable[[str], Awaitable[str | None]]


class BadReport(Invalid):
    """A DiagnosticReport that is not valid FHIR R4 (or not one CareHub can act on)."""

    code = "invalid_fhir"


class AlertNotFound(NotFound):
    code = "alert_not_found"


@dataclasses.dataclass(frozen=True)
class Critical:
    """One critical Observation of a report."""

    key: str
    item: str
    value: str
    flag: str


@dataclasses.dataclass(frozen=True)
class ParsedReport:
    key: str
    patient_id: str
    doctors: list[str]
    criticals: list[Critical]


class ClinicalAlerts:
    def __init__(self, hub: Hub, store: AlertStore, patient_label: PatientLabel, *,
                 default_ack_minutes: float = 5.0) -> None:
        self.hub = hub
        self.store = store
        self.patient_label = patient_label
        self.default_ack_minutes = default_ack_minutes

    # ---- raising -------------------------------------------------------------------------------

    async def raise_from_report(self, raw: bytes, *, source: str) -> list[str]:
        """The alert ids raised for the critical values of a DiagnosticReport (empty: nothing critical)."""
        report = parse_report(raw)
        if not report.criticals:
            return []
        label = await self.patient_label(report.patient_id)
        if label is None:
            raise BadReport(f"患者 {report.patient_id} 不存在 (DiagnosticReport.subject)")
        doctor = await self._responsible(report)
        ids = []
        for c in report.criticals:
            alert_id = "al-" + hashlib.blake2b(f"{source}|{report.key}|{c.key}".encode(), digest_size=10).hexdigest()
            await self.raise_alert(
                alert_id, "critical.value", doctor, patient_id=report.patient_id, patient=label, item=c.item,
                value=c.value, flag=c.flag, source=f"{source}:{report.key}"[:120],
                extra={"flag": f"{CRITICAL_FLAGS[c.flag]} {c.flag}"})
            ids.append(alert_id)
        return ids

    async def raise_alert(self, alert_id: str, kind: str, doctor_id: str, *, patient_id: str = "", patient: str = "",
                          item: str = "", value: str = "", flag: str = "", source: str = "",
                          extra: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Raise ``alert/<alert_id>`` of ``kind`` for ``doctor_id`` and their department's contacts.

        Any kind with ``needs_ack`` (``critical.value``, ``consultation.waiting``) may be raised; a
        repeat of the same id changes nothing."""
        spec = KINDS.get(kind)
        if spec is None or not spec.needs_ack:
            raise Invalid(f"kind {kind!r} is not one that needs an acknowledgement")
        doctor = await self.store.doctor(doctor_id)
        if doctor is None:
            raise Invalid(f"负责医生 {doctor_id} 不是本院医生")
        contacts, names = [doctor_id], [doctor["name"]]
        for c in await self.store.contacts(doctor["department_id"]):
            if c["account_id"] not in contacts:
                contacts.append(c["account_id"])
                names.append(c["name"])
        minutes = await self.store.ack_minutes(kind) or self.default_ack_minutes
        reply: dict[str, Any] = await self.hub.ask(make_address("alert", alert_id), Raise(
            contacts, names, minutes, kind=kind, patient_id=patient_id, patient=patient, item=item, value=value,
            flag=flag, department_id=doctor["department_id"], department=doctor["department"], source=source,
            extra=dict(extra or {})))
        return reply

    async def _responsible(self, report: ParsedReport) -> str:
        for account_id in report.doctors:
            if await self.store.doctor(account_id) is not None:
                return account_id
        today = dt.datetime.now(BEIJING).date()
        doctor = await self.store.todays_doctor(report.patient_id, today)
        if doctor is None:
            raise BadReport("无法确定负责医生：报告没有本院医生的 resultsInterpreter/performer，患者今天也没有就诊")
        return doctor

    # ---- the doctor's side ---------------------------------------------------------------------

    async def acknowledge(self, alert_id: str, account_id: str, roles: frozenset[str], device: str) -> dict[str, Any]:
        """``account_id`` acknowledges from ``device``; refused for a stranger or a second acknowledgement."""
        if await self.store.alert(alert_id) is None:
            raise AlertNotFound("没有这条警报")
        reply: dict[str, Any] = await self.hub.ask(make_address("alert", alert_id), Acknowledge(account_id, device),
                                                   caller=Caller(account_id, roles))
        return reply

    async def live(self, alert_id: str, account_id: str, roles: frozenset[str]) -> dict[str, Any]:
        """The actor's own view of one alert (contacts only)."""
        if await self.store.alert(alert_id) is None:
            raise AlertNotFound("没有这条警报")
        reply: dict[str, Any] = await self.hub.ask(make_address("alert", alert_id), GetAlert(),
                                                   caller=Caller(account_id, roles))
        return reply

    async def mine(self, account_id: str) -> list[dict[str, Any]]:
        """Open alerts on which ``account_id`` has been alerted, with contacts and steps."""
        return await self._expand(await self.store.open_for(account_id))

    async def open_alerts(self) -> list[dict[str, Any]]:
        return await self._expand(await self.store.open_alerts())

    async def one(self, alert_id: str) -> dict[str, Any]:
        row = await self.store.alert(alert_id)
        if row is None:
            raise AlertNotFound("没有这条警报")
        return (await self._expand([row]))[0]

    async def _expand(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not rows:
            return []
        steps = await self.store.steps([r["id"] for r in rows])
        names = await self.store.names(sorted({a for r in rows for a in r["contacts"].split(",") if a}))
        now = dt.datetime.now(dt.UTC)
        out = []
        for r in rows:
            chain = [a for a in r["contacts"].split(",") if a]
            alerted = set(r["notified"].split(","))
            out.append({**r, "contacts": [{"account_id": a, "name": names.get(a, ""), "alerted": a in alerted}
                                          for a in chain],
                        "current_name": names.get(r["current_account_id"], ""),
                        "acked_by_name": names.get(r["acked_by"] or "", None),
                        "age_seconds": max(0, int((now - r["raised_at"]).total_seconds())),
                        "steps": steps.get(r["id"], [])})
        return out


class AlertAlarmEffect(Effect):
    """``alert-alarm/<alert_id>``: an alert nobody acknowledged becomes an ops alarm (log + dashboard)."""

    kind = "alert-alarm"
    messages: ClassVar[dict[str, type[msgspec.Struct]]] = {"Unanswered": Unanswered}

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def perform(self, message: msgspec.Struct, ctx: Context) -> None:
        assert isinstance(message, Unanswered)
        self.hub.alarm("critical", f"clinical alert {message.alert_id} ({message.kind}, {message.department}) "
                                   f"unanswered by all {message.contacts} contacts")


# ---- FHIR R4 DiagnosticReport ------------------------------------------------------------------


def parse_report(raw: bytes) -> ParsedReport:
    """The patient, doctors and critical Observations of a DiagnosticReport; raises :class:`BadReport`.

    Observations are the report's ``contained`` resources referenced from ``result`` as ``#id``; a
    ``Bundle`` (collection/transaction) holding the report and its Observations is accepted too."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise BadReport(f"请求体不是有效的 JSON: {err}", code="bad_request") from None
    if not isinstance(data, dict):
        raise BadReport("请求体必须是一个 FHIR 资源 (JSON object)")
    included: dict[str, Any] = {}
    if data.get("resourceType") == "Bundle":
        report = None
        for i, entry in enumerate(_list(data, "entry", "Bundle")):
            res = _dict(entry, "resource", f"Bundle.entry[{i}]")
            if res.get("resourceType") == "DiagnosticReport" and report is None:
                report = res
            elif res.get("resourceType") == "Observation":
                for ref in (entry.get("fullUrl"), f"Observation/{res.get('id')}"):
                    if isinstance(ref, str):
                        included[ref] = res
        if report is None:
            raise BadReport("Bundle 中没有 DiagnosticReport")
        data = report
    if data.get("resourceType") != "DiagnosticReport":
        raise BadReport(f"resourceType 应为 DiagnosticReport，收到 {data.get('resourceType')!r}")
    status = data.get("status")
    if status not in REPORT_STATUSES:
        raise BadReport(f"DiagnosticReport.status 缺失或不在 R4 值集中: {status!r}")
    if not isinstance(data.get("code"), dict):
        raise BadReport("DiagnosticReport.code (CodeableConcept) 是必填项")
    patient_id = _patient(data)
    key = _report_key(data, raw)
    doctors = [ref for field in ("resultsInterpreter", "performer")
               for ref in _practitioners(_list(data, field, "DiagnosticReport"), field)]
    contained = {}
    for i, res in enumerate(_list(data, "contained", "DiagnosticReport")):
        if not isinstance(res, dict) or not isinstance(res.get("id"), str):
            raise BadReport(f"DiagnosticReport.contained[{i}] 需要 id")
        contained["#" + res["id"]] = res
    criticals = []
    if status not in VOID_STATUSES:
        for i, ref in enumerate(_list(data, "result", "DiagnosticReport")):
            where = f"DiagnosticReport.result[{i}]"
            target = ref.get("reference") if isinstance(ref, dict) else None
            if not isinstance(target, str):
                raise BadReport(f"{where}.reference 缺失")
            obs = contained.get(target) or included.get(target)
            if obs is None:
                raise BadReport(f"{where} 引用的 {target} 不在 contained 或 Bundle 中")
            critical = _critical(obs, target)
            if critical is not None:
                criticals.append(critical)
    return ParsedReport(key, patient_id, doctors, criticals)


def _list(data: Mapping[str, Any], field: str, where: str) -> list[Any]:
    value = data.get(field, [])
    if not isinstance(value, list):
        raise BadReport(f"{where}.{field} 必须是数组")
    return value


def _dict(data: Any, field: str, where: str) -> dict[str, Any]:
    value = data.get(field) if isinstance(data, dict) else None
    if not isinstance(value, dict):
        raise BadReport(f"{where}.{field} 必须是对象")
    return value


def _patient(report: Mapping[str, Any]) -> str:
    subject = report.get("subject")
    if not isinstance(subject, dict):
        raise BadReport("DiagnosticReport.subject (Patient 引用) 是必填项")
    ref = subject.get("reference")
    if isinstance(ref, str) and ref.startswith("Patient/") and len(ref) > 8:
        return ref.removeprefix("Patient/")[:64]
    ident = subject.get("identifier")
    if isinstance(ident, dict) and isinstance(ident.get("value"), str) and ident["value"]:
        return str(ident["value"])[:64]
    raise BadReport("DiagnosticReport.subject 应为 Patient/<id> 引用或带 identifier.value")


def _report_key(report: Mapping[str, Any], raw: bytes) -> str:
    for ident in report.get("identifier") or []:
        if isinstance(ident, dict) and isinstance(ident.get("value"), str):
            return f"{ident.get('system', '')}|{ident['value']}"
    if isinstance(report.get("id"), str):
        return f"id|{report['id']}"
    return "body|" + hashlib.blake2b(raw, digest_size=16).hexdigest()


def _practitioners(refs: list[Any], field: str) -> list[str]:
    out = []
    for i, ref in enumerate(refs):
        if not isinstance(ref, dict):
            raise BadReport(f"DiagnosticReport.{field}[{i}] 必须是 Reference")
        target = ref.get("reference")
        if isinstance(target, str) and target.startswith("Practitioner/"):
            out.append(target.removeprefix("Practitioner/"))
    return out


def _text(concept: Any) -> str:
    if not isinstance(concept, dict):
        return ""
    if isinstance(concept.get("text"), str):
        return str(concept["text"])
    for coding in concept.get("coding") or []:
        if isinstance(coding, dict) and isinstance(coding.get("display") or coding.get("code"), str):
            return str(coding.get("display") or coding.get("code"))
    return ""


def _critical(obs: Mapping[str, Any], where: str) -> Critical | None:
    if obs.get("resourceType") != "Observation":
        raise BadReport(f"{where} 不是 Observation")
    if obs.get("status") in ("cancelled", "entered-in-error"):
        return None
    flag = None
    for concept in obs.get("interpretation") or []:
        for coding in (concept.get("coding") or []) if isinstance(concept, dict) else []:
            if isinstance(coding, dict) and coding.get("system") == INTERPRETATION_SYSTEM \
                    and coding.get("code") in CRITICAL_FLAGS:
                flag = str(coding["code"])
    if flag is None:
        return None
    item = _text(obs.get("code"))
    if not item:
        raise BadReport(f"{where}.code 缺少 text/display")
    quantity = obs.get("valueQuantity")
    if isinstance(quantity, dict) and isinstance(quantity.get("value"), int | float):
        value = f"{quantity['value']:g} {quantity.get('unit') or quantity.get('code') or ''}".strip()
    elif isinstance(obs.get("valueString"), str):
        value = str(obs["valueString"])
    else:
        raise BadReport(f"{where} 需要 valueQuantity.value 或 valueString")
    return Critical(str(obs.get("id") or where), item[:100], value[:60], flag)
