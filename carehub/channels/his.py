"""Outpatient appointments to the hospital information system (HIS), as HL7 FHIR R4 Appointments.

CareHub books outpatient appointments; the HIS must know each of them (the clinic's list, the
registration desk, billing). :class:`HisClient` is the adapter: :meth:`~HisClient.push_appointment`
writes a booking's current state to the HIS's FHIR server, :meth:`~HisClient.get_appointment`
reads it back, :func:`appointment_resource` (pure) is the Appointment it sends.

Idempotence. A booking is found at the HIS by its business identifier (``identifier`` with
system :attr:`HisConfig.identifier_system`, value the booking id), never by the server's id, and
is written with a FHIR conditional update, ``PUT [base]/Appointment?identifier=system|id``: the
server creates it when no Appointment carries the identifier and updates the one that does.
The resource is a function of the booking alone (``created`` is the booking's, not "now"), so
pushing the same state again changes nothing at a server that versions only real changes, and
pushing after a timeout is always safe. Push every state change of a booking; out-of-order
pushes are the caller's to avoid (push from the booking's own actor, one at a time).

CareHub's booking states and the Appointment.status they become (R4 value set
``appointmentstatus``): see :data:`STATUS_TO_FHIR`.

The resource: ``identifier``, ``status``, ``appointmentType`` (v2-0276 ``ROUTINE``),
``serviceType`` and ``description`` (the department), ``start``/``end``/``created`` in Beijing
time with their offset (``+08:00``), participants ``Patient/{patient_id}``,
``Practitioner/{doctor_id}`` (type ``PPRF``, primary performer) and
``HealthcareService/{department_id}``, each with its name as ``display``; ``cancelationReason``
(text) when cancelled or a no-show with a reason; the booking channel as the extension
:data:`CHANNEL_EXTENSION_URL` and, for the HIS staff's screens, in ``comment``.

Errors (each says whether pushing again later may succeed, ``retryable``)::

    HisError             anything else: an unusable answer, a misconfigured base URL
    ├── HisUnavailable   HTTP 5xx, 429, 408, or the server could not be reached (retryable)
    ├── HisTimeout       no answer, or the connection broke after the request was sent: the write
    │                    may or may not have landed; repeating it is safe (retryable)
    └── HisRejected      HTTP 4xx: the HIS refused the request (invalid resource, bad token,
                         several appointments with one identifier); the OperationOutcome's
                         diagnostics are in the message and in ``issues`` (not retryable)

Patient names are personal data: they are sent to the HIS but never logged.

Charges (OUT-13, OUT-14). What a patient owes is, at the HIS, a list of R4 ``ChargeItem``
resources: ``subject`` the patient, ``context`` the visit (an Encounter, with the booking id as
its identifier when it came from a CareHub booking), ``supportingInformation`` the slip it was
ordered on (``ServiceRequest/...`` for an exam, ``MedicationRequest/...`` for a prescription),
``code`` the item, ``quantity`` and ``priceOverride`` (R4: "total price of the charge", Money in
yuan). ``status`` is ``billable`` while it is owed and ``billed`` once paid; a refunded charge
becomes ``aborted``. R4 defines no ``status`` search parameter for ChargeItem, so
:meth:`HisClient.charge_items` searches by patient and the caller filters. A payment is written
back with :meth:`HisClient.set_charge_status`: a read, then an update with ``If-Match`` (retried on
a version conflict); the payment's ``out_trade_no`` goes in the :data:`PAYMENT_EXTENSION_URL`
extension. A self-service test order reaches the HIS as a ``ServiceRequest`` (intent ``order``)
plus its ``ChargeItem``, both written by identifier with conditional updates
(:meth:`HisClient.push_service_request`, :meth:`HisClient.push_charge_item`), so repeating is safe.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import logging
import re
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import httpx
import orjson

log = logging.getLogger("carehub.channels.his")

BEIJING = dt.timezone(dt.timedelta(hours=8), "CST")
FHIR_JSON = "application/fhir+json"
DEFAULT_IDENTIFIER_SYSTEM = "urn:carehub:booking"
#: CareHub's own extension for the channel a booking came through (its value: CareHub's code).
CHANNEL_EXTENSION_URL = "https://carehub.example/fhir/StructureDefinition/booking-channel"
APPOINTMENT_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0276"
PARTICIPATION_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"

#: Identifier systems of what CareHub itself writes as charges and orders.
BILL_IDENTIFIER_SYSTEM = "urn:carehub:bill"
TEST_ORDER_IDENTIFIER_SYSTEM = "urn:carehub:test-order"
#: The code system of CareHub's self-service test catalogue.
CATALOGUE_CODE_SYSTEM = "https://carehub.example/fhir/CodeSystem/self-service-tests"
#: CareHub's extension naming the payment that settled a charge (valueIdentifier: out_trade_no).
PAYMENT_EXTENSION_URL = "https://carehub.example/fhir/StructureDefinition/charge-payment"
PAYMENT_IDENTIFIER_SYSTEM = "https://pay.weixin.qq.com/out-trade-no"
#: The hospital's extension giving a charge's category (exam, lab, drug, treatment, other).
CATEGORY_EXTENSION_URL = "https://carehub.example/fhir/StructureDefinition/charge-category"
#: R4 ChargeItem.status (value set chargeitem-status).
CHARGE_STATUSES = frozenset({"planned", "billable", "not-billable", "aborted", "billed", "entered-in-error", "unknown"})

#: CareHub's booking state -> FHIR R4 Appointment.status.
STATUS_TO_FHIR: Mapping[str, str] = {
    "held": "pending",  # a slot held until the patient pays: not yet final
    "booked": "booked",
    "paid": "booked",  # payment does not change the appointment itself
    "cancelled": "cancelled",
    "checked_in": "arrived",
    "seen": "fulfilled",
    "no_show": "noshow",
}
#: Appointment.status values that may carry a cancelationReason (R4 invariant app-4).
_REASON_STATUSES = frozenset({"cancelled", "noshow"})

#: How the HIS staff read a channel in the appointment's comment (unknown channels as they are).
CHANNEL_LABELS: Mapping[str, str] = {
    "wechat": "微信公众号",
    "miniprogram": "微信小程序",
    "alipay": "支付宝",
    "app": "手机App",
    "web": "网站",
    "kiosk": "自助机",
    "window": "人工窗口",
    "phone": "电话预约",
}


class HisError(Exception):
    """The HIS refused a request, gave an answer CareHub cannot use, or could not be reached."""

    default_retryable = False

    def __init__(
        self,
        message: str,
        retryable: bool | None = None,
        *,
        status: int | None = None,
        issues: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = self.default_retryable if retryable is None else retryable
        #: the HTTP status of the answer, None without one
        self.status = status
        #: the OperationOutcome's issues, as ``expression: diagnostics`` texts
        self.issues = issues


class HisUnavailable(HisError):
    """The HIS failed (HTTP 5xx), asked to be called later (429, 408) or could not be reached."""

    default_retryable = True


class HisTimeout(HisError):
    """No answer in time, or the connection broke after the request was sent.

    The write may have landed. Pushes are idempotent (conditional update by identifier), so
    pushing the same booking again is safe.
    """

    default_retryable = True


class HisRejected(HisError):
    """The HIS refused the request (HTTP 4xx); sending it again will not help."""


@dataclasses.dataclass(frozen=True)
class HisConfig:
    """Where the HIS's FHIR server is (``base_url``, e.g. ``https://his.example/fhir``), the bearer
    token, how long one request may take, and the identifier system of CareHub's bookings."""

    base_url: str
    token: str = dataclasses.field(repr=False)  # kept out of logs and tracebacks
    timeout_seconds: float = 5.0
    identifier_system: str = DEFAULT_IDENTIFIER_SYSTEM


@dataclasses.dataclass(frozen=True)
class AppointmentInfo:
    """One outpatient booking as the HIS should know it. Times must be timezone-aware."""

    booking_id: str
    status: str  # a key of STATUS_TO_FHIR
    patient_id: str
    patient_name: str
    doctor_id: str
    doctor_name: str
    department_id: str
    department_name: str
    start: dt.datetime
    end: dt.datetime
    channel: str
    created: dt.datetime
    cancel_reason: str | None = None


def fhir_status(status: str) -> str:
    """The Appointment.status of a CareHub booking state; ValueError for an unknown state."""
    try:
        return STATUS_TO_FHIR[status]
    except KeyError:
        raise ValueError(f"unknown booking status {status!r} (known: {', '.join(STATUS_TO_FHIR)})") from None


def fhir_instant(when: dt.datetime) -> str:
    """An aware datetime as an R4 instant in Beijing time: ``2026-11-25T08:30:00+08:00``."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{when!r} has no time zone: FHIR instants need one")
    return when.astimezone(BEIJING).isoformat(timespec="seconds")


def escape_search_value(value: str) -> str:
    """Escape ``\\ , | $`` in a FHIR search parameter value (R4 search.html#escaping)."""
    return re.sub(r"([\\,|$])", r"\\\1", value)


def identifier_search(system: str, value: str) -> str:
    """The token search value ``system|value`` of one identifier."""
    return f"{escape_search_value(system)}|{escape_search_value(value)}"


def appointment_resource(
    info: AppointmentInfo, *, identifier_system: str = DEFAULT_IDENTIFIER_SYSTEM
) -> dict[str, Any]:
    """The FHIR R4 Appointment for ``info``: a function of ``info`` alone, so pushing one state
    twice sends the same resource (no ``id``: the server finds it by identifier)."""
    status = fhir_status(info.status)
    channel = CHANNEL_LABELS.get(info.channel, info.channel)
    patient_status = "needs-action" if status == "pending" else "accepted"
    resource: dict[str, Any] = {
        "resourceType": "Appointment",
        "extension": [{"url": CHANNEL_EXTENSION_URL, "valueString": info.channel}],
        "identifier": [{"use": "usual", "system": identifier_system, "value": info.booking_id}],
        "status": status,
    }
    if info.cancel_reason and status in _REASON_STATUSES:
        resource["cancelationReason"] = {"text": info.cancel_reason}
    resource |= {
        "serviceType": [{"text": info.department_name}],
        "appointmentType": {
            "coding": [{"system": APPOINTMENT_TYPE_SYSTEM, "code": "ROUTINE", "display": "Routine appointment"}]
        },
        "description": f"{info.department_name} 门诊 {info.doctor_name}",
        "start": fhir_instant(info.start),
        "end": fhir_instant(info.end),
        "created": fhir_instant(info.created),
        "comment": f"预约渠道：{channel}",
        "participant": [
            {
                "actor": {"reference": f"Patient/{info.patient_id}", "display": info.patient_name},
                "required": "required",
                "status": patient_status,
            },
            {
                "type": [
                    {"coding": [{"system": PARTICIPATION_TYPE_SYSTEM, "code": "PPRF", "display": "primary performer"}]}
                ],
                "actor": {"reference": f"Practitioner/{info.doctor_id}", "display": info.doctor_name},
                "required": "required",
                "status": "accepted",
            },
            {
                "actor": {"reference": f"HealthcareService/{info.department_id}", "display": info.department_name},
                "required": "required",
                "status": "accepted",
            },
        ],
    }
    return resource


def _issues(body: bytes) -> tuple[str, ...]:
    """The issues of an OperationOutcome answer, ``expression: diagnostics``; () if it is none."""
    try:
        outcome = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ()
    if not isinstance(outcome, dict) or outcome.get("resourceType") != "OperationOutcome":
        return ()
    texts = []
    for issue in outcome.get("issue") or []:
        if not isinstance(issue, dict):
            continue
        text = str(issue.get("diagnostics") or (issue.get("details") or {}).get("text") or issue.get("code", ""))
        where = issue.get("expression") or issue.get("location") or []
        texts.append(f"{', '.join(map(str, where))}: {text}" if where else text)
    return tuple(texts)


@dataclasses.dataclass(frozen=True)
class Charge:
    """One ChargeItem as CareHub reads it. ``amount_fen`` is the total of the line (priceOverride)."""

    his_id: str
    version: str
    status: str
    patient_id: str
    code: str
    name: str
    category: str
    quantity: int
    amount_fen: int
    visit_id: str | None
    slip: str | None
    occurred_at: dt.datetime | None
    payment: str | None  # the out_trade_no in the payment extension, if any
    bill_id: str | None = None  # set on the charges CareHub wrote itself (self-service orders)


def yuan(fen: int) -> float:
    """Fen as the decimal yuan of a FHIR Money value (2 decimals)."""
    return round(fen / 100, 2)


def fen(value: Any) -> int:
    """A FHIR Money value (yuan, a JSON number) in fen; ValueError if it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not an amount")
    return int(decimal.Decimal(str(value)).scaleb(2).to_integral_value(decimal.ROUND_HALF_UP))


def _reference_id(ref: Any, kind: str) -> str | None:
    if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
        head, _, tail = ref["reference"].rpartition("/")
        if head.endswith(kind) and tail:
            return tail
    return None


def charge_from_resource(resource: Mapping[str, Any], *, booking_system: str = DEFAULT_IDENTIFIER_SYSTEM) -> Charge:
    """Read a ChargeItem; ValueError when it lacks what a bill needs (id, subject, code, price)."""
    try:
        patient = _reference_id(resource.get("subject"), "Patient")
        if patient is None:
            raise ValueError("subject is not a Patient reference")
        code = resource["code"]
        coding: dict[str, Any] = next(iter(code.get("coding") or []), {})
        name = str(code.get("text") or coding.get("display") or coding.get("code") or "")
        price = resource.get("priceOverride") or {}
        if price.get("currency", "CNY") != "CNY":
            raise ValueError(f"price in {price.get('currency')}, not CNY")
        quantity = int((resource.get("quantity") or {}).get("value", 1))
        context = resource.get("context") or {}
        ident = context.get("identifier") or {}
        visit = ident.get("value") if ident.get("system") == booking_system else _reference_id(context, "Encounter")
        slip = next((str(r["reference"]) for r in resource.get("supportingInformation") or []
                     if isinstance(r, dict) and isinstance(r.get("reference"), str)), None)
        extensions = {e.get("url"): e for e in resource.get("extension") or [] if isinstance(e, dict)}
        payment = (extensions.get(PAYMENT_EXTENSION_URL) or {}).get("valueIdentifier", {}).get("value")
        category = str((extensions.get(CATEGORY_EXTENSION_URL) or {}).get("valueCode") or "other")
        when = resource.get("occurrenceDateTime") or resource.get("enteredDate")
        own = next((str(i.get("value")) for i in resource.get("identifier") or []
                    if isinstance(i, dict) and i.get("system") == BILL_IDENTIFIER_SYSTEM), None)
        return Charge(
            his_id=str(resource["id"]), version=str((resource.get("meta") or {}).get("versionId", "")),
            status=str(resource["status"]), patient_id=patient, code=str(coding.get("code") or name)[:40],
            name=name[:100], category=category[:20], quantity=quantity, amount_fen=fen(price["value"]),
            visit_id=str(visit) if visit else None, slip=slip, payment=str(payment) if payment else None, bill_id=own,
            occurred_at=dt.datetime.fromisoformat(when) if isinstance(when, str) and "T" in when else None,
        )
    except (KeyError, TypeError, AttributeError, decimal.InvalidOperation) as err:
        raise ValueError(f"ChargeItem/{resource.get('id')}: {type(err).__name__}: {err}") from None


@dataclasses.dataclass(frozen=True)
class SelfServiceOrder:
    """A self-service test order (OUT-14) as the HIS should know it: a ServiceRequest and its ChargeItem."""

    order_id: str
    bill_id: str
    patient_id: str
    code: str
    name: str
    category: str
    amount_fen: int
    created: dt.datetime
    paid_by: str | None  # out_trade_no once paid
    status: str  # active (paid, to be performed) | revoked (refunded)


def service_request_resource(info: SelfServiceOrder) -> dict[str, Any]:
    """The R4 ServiceRequest of a self-service test order (a function of ``info`` alone)."""
    return {
        "resourceType": "ServiceRequest",
        "identifier": [{"use": "usual", "system": TEST_ORDER_IDENTIFIER_SYSTEM, "value": info.order_id}],
        "status": info.status,
        "intent": "order",
        "code": {"coding": [{"system": CATALOGUE_CODE_SYSTEM, "code": info.code, "display": info.name}],
                 "text": info.name},
        "subject": {"reference": f"Patient/{info.patient_id}"},
        "authoredOn": fhir_instant(info.created),
        "requester": {"reference": f"Patient/{info.patient_id}"},
        "note": [{"text": "患者自助开单 (CareHub)"}],
    }


def self_service_charge_resource(info: SelfServiceOrder, service_request_id: str) -> dict[str, Any]:
    """The R4 ChargeItem of a self-service test order: billed once paid, aborted once refunded."""
    resource: dict[str, Any] = {
        "resourceType": "ChargeItem",
        "extension": [{"url": CATEGORY_EXTENSION_URL, "valueCode": info.category}],
        "identifier": [{"use": "usual", "system": BILL_IDENTIFIER_SYSTEM, "value": info.bill_id}],
        "status": "billed" if info.status == "active" else "aborted",
        "code": {"coding": [{"system": CATALOGUE_CODE_SYSTEM, "code": info.code, "display": info.name}],
                 "text": info.name},
        "subject": {"reference": f"Patient/{info.patient_id}"},
        "occurrenceDateTime": fhir_instant(info.created),
        "quantity": {"value": 1},
        "priceOverride": {"value": yuan(info.amount_fen), "currency": "CNY"},
        "enteredDate": fhir_instant(info.created),
        "supportingInformation": [{"reference": f"ServiceRequest/{service_request_id}"}],
    }
    if info.paid_by:
        resource["extension"].append({"url": PAYMENT_EXTENSION_URL, "valueIdentifier": {
            "system": PAYMENT_IDENTIFIER_SYSTEM, "value": info.paid_by}})
    return resource


class HisClient:
    """Talks FHIR R4 to the HIS. Use it as ``async with HisClient(config) as his:``, or call
    :meth:`aclose`. ``http`` lends it a client whose lifetime the caller owns instead."""

    def __init__(self, config: HisConfig, *, http: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self._base = config.base_url.rstrip("/")
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=config.timeout_seconds)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    def appointment_resource(self, info: AppointmentInfo) -> dict[str, Any]:
        """The Appointment :meth:`push_appointment` sends for ``info``."""
        return appointment_resource(info, identifier_system=self.config.identifier_system)

    def _identifier(self, booking_id: str) -> str:
        return identifier_search(self.config.identifier_system, booking_id)

    async def push_appointment(self, info: AppointmentInfo) -> str:
        """Create or update the booking's Appointment at the HIS; returns its id there.

        A conditional update by identifier: idempotent, safe to repeat after any error marked
        ``retryable`` (:class:`HisTimeout` included).
        """
        body = orjson.dumps(self.appointment_resource(info))
        response = await self._request(
            "PUT",
            "/Appointment",
            params={"identifier": self._identifier(info.booking_id)},
            content=body,
            headers={"content-type": FHIR_JSON, "prefer": "return=representation"},
            what=f"push of booking {info.booking_id}",
        )
        resource_id = self._resource_id(response)
        if resource_id is None:
            raise HisError(
                f"push of booking {info.booking_id}: HTTP {response.status_code} names no Appointment id",
                retryable=True,
                status=response.status_code,
            )
        log.info(
            "pushed booking %s (%s) to the HIS: Appointment/%s, HTTP %d, version %s",
            info.booking_id,
            info.status,
            resource_id,
            response.status_code,
            response.headers.get("etag", "?"),
        )
        return resource_id

    async def get_appointment(self, booking_id: str) -> dict[str, Any] | None:
        """The HIS's Appointment of a booking (searched by identifier), None if it has none."""
        response = await self._request(
            "GET",
            "/Appointment",
            params={"identifier": self._identifier(booking_id)},
            what=f"search for booking {booking_id}",
        )
        bundle = self._json(response, f"search for booking {booking_id}")
        if bundle.get("resourceType") != "Bundle":
            raise HisError(f"search for booking {booking_id}: the answer is not a Bundle", status=response.status_code)
        found = [
            entry["resource"]
            for entry in bundle.get("entry") or []
            if isinstance(entry, dict)
            and isinstance(entry.get("resource"), dict)
            and entry["resource"].get("resourceType") == "Appointment"
            and (entry.get("search") or {}).get("mode", "match") == "match"
        ]
        if len(found) > 1:
            ids = ", ".join(str(r.get("id")) for r in found)
            raise HisError(f"booking {booking_id}: {len(found)} appointments at the HIS carry it ({ids})")
        return found[0] if found else None

    # -- charges (OUT-13, OUT-14) ---------------------------------------------------------------

    async def charge_items(self, patient_id: str, *, max_pages: int = 20) -> list[Charge]:
        """Every ChargeItem of a patient (all statuses: R4 has no status search parameter for
        ChargeItem), following the Bundle's ``next`` links. Unreadable items are skipped and logged."""
        what = f"charges of patient {patient_id}"
        params: Mapping[str, str] = {"patient": f"Patient/{patient_id}", "_count": "100"}
        url = self._base + "/ChargeItem"
        charges: list[Charge] = []
        for _ in range(max_pages):
            response = await self._request("GET", url, params=params, what=what, absolute=True)
            bundle = self._json(response, what)
            if bundle.get("resourceType") != "Bundle":
                raise HisError(f"{what}: the answer is not a Bundle", status=response.status_code)
            for entry in bundle.get("entry") or []:
                resource = entry.get("resource") if isinstance(entry, dict) else None
                if not isinstance(resource, dict) or resource.get("resourceType") != "ChargeItem":
                    continue
                try:
                    charges.append(charge_from_resource(resource, booking_system=self.config.identifier_system))
                except ValueError as err:
                    log.warning("%s: skipped an unreadable ChargeItem: %s", what, err)
            following = next((link.get("url") for link in bundle.get("link") or []
                              if isinstance(link, dict) and link.get("relation") == "next"), None)
            if not following or not str(following).startswith(self._base + "/"):
                return charges
            link = httpx.URL(str(following))
            url, params = str(link.copy_with(query=None)), dict(link.params)
        log.warning("%s: more than %d pages, the rest is left out", what, max_pages)
        return charges

    async def set_charge_status(self, his_id: str, status: str, *, payment: str | None = None,
                                attempts: int = 3) -> Charge:
        """Set a ChargeItem's status (``billed`` once paid, with the payment's ``out_trade_no``;
        ``aborted`` once refunded): read, change, update with ``If-Match``; a version conflict
        (412) reads again. Nothing is written when the item already says so (idempotent)."""
        if status not in CHARGE_STATUSES:
            raise ValueError(f"{status!r} is not a ChargeItem status")
        what = f"status {status} of ChargeItem/{his_id}"
        for _ in range(attempts):
            response = await self._request("GET", f"/ChargeItem/{his_id}", params={}, what=what)
            resource = self._json(response, what)
            extensions = [e for e in resource.get("extension") or [] if e.get("url") != PAYMENT_EXTENSION_URL]
            if payment:
                extensions.append({"url": PAYMENT_EXTENSION_URL, "valueIdentifier": {
                    "system": PAYMENT_IDENTIFIER_SYSTEM, "value": payment}})
            current = charge_from_resource(resource, booking_system=self.config.identifier_system)
            if current.status == status and (payment is None or current.payment == payment):
                return current
            changed = {k: v for k, v in resource.items() if k not in ("meta", "extension")} | {"status": status}
            if extensions:
                changed["extension"] = extensions
            etag = response.headers.get("etag") or f'W/"{current.version}"'
            try:
                answer = await self._request(
                    "PUT", f"/ChargeItem/{his_id}", params={}, what=what, content=orjson.dumps(changed),
                    headers={"content-type": FHIR_JSON, "if-match": etag, "prefer": "return=representation"},
                )
            except HisRejected as err:
                if err.status == 412:
                    log.info("%s: version conflict, reading again", what)
                    continue
                raise
            log.info("ChargeItem/%s is now %s", his_id, status)
            return charge_from_resource(self._json(answer, what), booking_system=self.config.identifier_system)
        raise HisUnavailable(f"{what}: still a version conflict after {attempts} attempts")

    async def push_service_request(self, order: SelfServiceOrder) -> str:
        """Create or update the ServiceRequest of a self-service test order (by identifier)."""
        return await self._conditional_put(
            "ServiceRequest", TEST_ORDER_IDENTIFIER_SYSTEM, order.order_id, service_request_resource(order),
            f"push of test order {order.order_id}")

    async def push_charge_item(self, order: SelfServiceOrder, service_request_id: str) -> str:
        """Create or update the ChargeItem of a self-service test order (by identifier)."""
        return await self._conditional_put(
            "ChargeItem", BILL_IDENTIFIER_SYSTEM, order.bill_id,
            self_service_charge_resource(order, service_request_id), f"push of bill {order.bill_id}")

    async def _conditional_put(self, kind: str, system: str, value: str, resource: dict[str, Any],
                               what: str) -> str:
        response = await self._request(
            "PUT", f"/{kind}", params={"identifier": identifier_search(system, value)}, what=what,
            content=orjson.dumps(resource), headers={"content-type": FHIR_JSON, "prefer": "return=representation"},
        )
        resource_id = self._resource_id(response, kind)
        if resource_id is None:
            raise HisError(f"{what}: HTTP {response.status_code} names no {kind} id", retryable=True,
                           status=response.status_code)
        return resource_id

    # -- the wire -------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str],
        what: str,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        absolute: bool = False,
    ) -> httpx.Response:
        all_headers = {"accept": FHIR_JSON, "authorization": f"Bearer {self.config.token}", **(headers or {})}
        try:
            response = await self._http.request(
                method,
                path if absolute else self._base + path,
                params=params,
                content=content,
                headers=all_headers,
                timeout=self.config.timeout_seconds,
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as err:
            # nothing was sent
            raise HisUnavailable(f"{what}: the HIS is unreachable: {type(err).__name__}: {err}") from err
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as err:
            log.warning("%s: no answer from the HIS (%s); it may have landed", what, type(err).__name__)
            raise HisTimeout(f"{what}: no answer from the HIS: {type(err).__name__}: {err}") from err
        except httpx.TransportError as err:
            raise HisError(f"{what}: {type(err).__name__}: {err}") from err
        if response.is_success:
            return response
        issues = _issues(response.content)
        detail = "; ".join(issues) or response.text[:200] or response.reason_phrase
        message = f"{what}: HTTP {response.status_code}: {detail}"
        status = response.status_code
        if status >= 500 or status in (408, 429):
            log.warning("%s", message)
            raise HisUnavailable(message, status=status, issues=issues)
        log.warning("%s", message)
        if 400 <= status < 500:
            raise HisRejected(message, status=status, issues=issues)
        raise HisError(message, status=status, issues=issues)

    @staticmethod
    def _json(response: httpx.Response, what: str) -> dict[str, Any]:
        try:
            value = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            raise HisError(f"{what}: the answer is not a FHIR resource: {response.text[:200]!r}", retryable=True)
        return value

    @staticmethod
    def _resource_id(response: httpx.Response, kind: str = "Appointment") -> str | None:
        if response.content:
            try:
                value = orjson.loads(response.content)
            except orjson.JSONDecodeError:
                value = None
            if isinstance(value, dict) and value.get("resourceType") == kind and value.get("id"):
                return str(value["id"])
        location = response.headers.get("location") or response.headers.get("content-location") or ""
        match = re.search(rf"{kind}/([A-Za-z0-9\-.]{{1,64}})(?:/_history/|$)", location)
        return match.group(1) if match else None
