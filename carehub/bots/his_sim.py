"""A simulator of the hospital information system's (HIS) HL7 FHIR R4 server: Appointment, ChargeItem, ServiceRequest.

It is an outsider like every bot: it shares no code with CareHub's HIS adapter
(:mod:`carehub.channels.his`) and implements the server's side of FHIR R4 on its own (RESTful
API, JSON format, search, Appointment rules), so a test that passes against it proves the adapter
speaks FHIR, not that two halves of one module agree.

The FHIR API, under ``/fhir`` (``application/fhir+json``; ``application/json`` is accepted too):

- Authentication: ``Authorization: Bearer <token>``; without it, or with another token, 401 with
  an OperationOutcome (``login``) and ``WWW-Authenticate: Bearer``. ``GET /fhir/metadata`` (the
  CapabilityStatement) is open, as on most servers.
- ``PUT /fhir/Appointment?<search>`` conditional update (R4 http.html#cond-update): no match
  creates (201, ``Location: .../Appointment/<id>/_history/1``, ``ETag: W/"1"``); one match
  updates it (200), a new version only when the content changed (``id`` and ``meta.versionId``/
  ``meta.lastUpdated`` do not count), else the same version comes back; several matches 412
  (``multiple-matches``). A body ``id`` that differs from the match's is refused (400), and so is a
  resource that would not match its own criteria (it could never be found by them again).
- ``POST /fhir/Appointment`` create (201), conditional with ``If-None-Exist: <search>`` (an
  existing match answers 200 and nothing is created).
- ``GET``/``PUT /fhir/Appointment/<id>`` read (404 if unknown) and update (update-as-create
  allowed; ``If-Match: W/"<n>"`` is checked, 412 when stale).
- ``GET /fhir/Appointment/<id>/_history`` and ``/_history/<vid>``: history and version read.
- ``GET /fhir/Appointment?...`` search, a ``searchset`` Bundle (``total``, ``self``/``next``
  links, ``entry[].fullUrl``, ``search.mode = match``). Parameters: ``_id``, ``identifier``
  (``system|value``, ``|value``, ``value``, ``system|``), ``patient``, ``practitioner``,
  ``location``, ``actor`` (``Type/id``, ``id`` or an absolute URL), ``status``, ``date``
  (on ``start``; prefixes ``eq ne lt gt le ge sa eb``; a date or time without a zone is Beijing
  time), ``_count`` and ``_offset``. Commas OR values, a repeated parameter ANDs; ``\\,``,
  ``\\|``, ``\\$`` and ``\\\\`` are escapes. Unknown parameters are ignored (left out of the
  ``self`` link) unless the request says ``Prefer: handling=strict``.
- ``Prefer: return=minimal | representation | OperationOutcome`` on create/update.
- Validation of every Appointment written: JSON object with ``resourceType: Appointment`` (else
  400); then (422, one ``issue`` per problem, each with ``expression``): no unknown elements, no
  ``null``/empty values, datatypes (id, code, instant, dateTime, positiveInt, CodeableConcept,
  Reference, Period, Identifier, Extension with ext-1), ``status`` in the R4 value set,
  ``participant`` 1..* each with ``status`` (accepted, declined, tentative, needs-action) and a
  ``type`` or ``actor`` (app-1), actors of the allowed resource types, ``start``/``end`` both or
  neither (app-2) and present unless proposed/cancelled/waitlist (app-3), ``end`` not before
  ``start``, ``cancelationReason`` only when cancelled or noshow (app-4), and no
  ``modifierExtension`` (this server understands none, so it must refuse them).

Charges and orders (OUT-13, OUT-14), the same API for ``ChargeItem`` and ``ServiceRequest``:
read, versioned update (``If-Match`` checked, 412 when stale), conditional update by search,
create, and search with ``_id``, ``identifier``, ``patient``, ``subject`` and (ChargeItem)
``context``, paged like Appointment searches. Validation (422): required ``status`` (R4 value
sets chargeitem-status / request-status), ``code`` and ``subject`` (a Patient), ServiceRequest
``intent``; ``priceOverride`` a Money in CNY, ``quantity`` a Quantity, known elements only.

The admin API under ``/_sim/`` (no authentication; bind it to localhost):

- ``POST /_sim/charges`` ``{"patient_id", "visit_id"?, "slip"?, "items": [{"code", "name",
  "amount_fen", "quantity"?, "category"?, "status"?}]}``: what the hospital's doctors ordered in
  a visit, as ChargeItems (``billable`` unless ``status`` says otherwise; ``visit_id`` a booking id,
  ``slip`` the request it was ordered on, e.g. ``ServiceRequest/SR1``). Answers the ids.
- ``GET /_sim/charges?patient=`` and ``GET /_sim/service-requests``: what is stored, with versions.

- ``GET /_sim/appointments`` every stored appointment: ``{"id", "version", "history" (number of
  versions), "resource"}``.
- ``POST /_sim/appointments`` a raw resource stored as is, unvalidated (to seed what the HIS
  already holds, e.g. two appointments with one identifier).
- ``GET /_sim/requests?limit=`` the FHIR requests received, newest first (method, path, query,
  status).
- ``POST /_sim/faults`` ``{"kind": "error"|"unavailable"|"timeout", "count": N, "accept": false}``:
  the next N FHIR requests answer 500 (``error``) or 503 with ``Retry-After`` (``unavailable``), or
  never answer (``timeout``; with ``"accept": true`` the request is carried out first, as when the
  answer is lost on its way back).
- ``POST /_sim/reset`` forget appointments, requests and faults. ``GET /_sim/health``.

Critical values, as the hospital's LIS publishes them (MSG-7): the simulator posts a FHIR R4
``DiagnosticReport`` with a contained ``Observation`` flagged ``HH``/``LL`` (v3-ObservationInterpretation)
to CareHub's signed partner route ``POST <carehub>/api/v1/open/fhir/DiagnosticReport``, signing it
with HMAC-SM3 as a partner does (``X-CareHub-Key/Timestamp/Nonce/Signature``; implemented here on
gmssl's SM3, sharing nothing with CareHub):

- ``POST /_sim/carehub`` ``{"url", "key_id", "secret"}``: where CareHub is and the partner key
  (operation ``alerts.raise``) to sign with (also ``serve_his(carehub_url=, partner_key=, partner_secret=)``).
- ``POST /_sim/critical`` ``{"patient_id", "item", "value", "unit"?, "flag": "HH"|"LL", "doctor_id"?,
  "report_id"?}``: publish one critical value; answers CareHub's status and body
  (``{"status": 202, "answer": {"alert_ids": [...]}, "report_id"}``).

Run it on its own with ``python -m carehub.bots.his_sim --port 8092``; tests start it in process
with ``await nursery.start(functools.partial(serve_his, port=0, token=...))``, which hands back a
:class:`HisHandle`.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime as dt
import email.utils
import functools
import hmac
import itertools
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

import httpx
import orjson
import trio
from gmssl import func as _gm_func  # type: ignore[import-untyped]
from gmssl import sm3 as _gm_sm3

from ._asgi import Receive, Request, Send, SimulatorApp, admin_json, hang, respond, run_until_signalled, serve_app

log = logging.getLogger("carehub.bots.his_sim")

FHIR_BASE_PATH = "/fhir"
FHIR_JSON = "application/fhir+json; charset=utf-8"
#: The simulator's own bearer token (``--token`` changes it).
DEFAULT_TOKEN = "carehub-his-simulator-token"
BEIJING = dt.timezone(dt.timedelta(hours=8), "CST")
MAX_BODY_BYTES = 1024 * 1024
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500

# -- R4 value sets and element lists (https://hl7.org/fhir/R4/appointment.html) ------------------

APPOINTMENT_STATUSES = frozenset(
    {
        "proposed",
        "pending",
        "booked",
        "arrived",
        "fulfilled",
        "cancelled",
        "noshow",
        "entered-in-error",
        "checked-in",
        "waitlist",
    }
)
PARTICIPANT_STATUSES = frozenset({"accepted", "declined", "tentative", "needs-action"})
PARTICIPANT_REQUIRED = frozenset({"required", "optional", "information-only"})
#: app-3: only these may lack start and end.
UNSCHEDULED_STATUSES = frozenset({"proposed", "cancelled", "waitlist"})
#: app-4: only these may carry a cancelationReason.
CANCELLED_STATUSES = frozenset({"cancelled", "noshow"})
ACTOR_TYPES = frozenset(
    {"Patient", "Practitioner", "PractitionerRole", "RelatedPerson", "Device", "HealthcareService", "Location"}
)
IDENTIFIER_USES = frozenset({"usual", "official", "temp", "secondary", "old"})
NARRATIVE_STATUSES = frozenset({"generated", "extensions", "additional", "empty"})

_ELEMENT_BASE = frozenset({"id", "extension"})
APPOINTMENT_ELEMENTS = frozenset(
    {
        "resourceType",
        "id",
        "meta",
        "implicitRules",
        "language",
        "text",
        "contained",
        "extension",
        "modifierExtension",
        "identifier",
        "status",
        "cancelationReason",
        "serviceCategory",
        "serviceType",
        "specialty",
        "appointmentType",
        "reasonCode",
        "reasonReference",
        "priority",
        "description",
        "supportingInformation",
        "start",
        "end",
        "minutesDuration",
        "slot",
        "created",
        "comment",
        "patientInstruction",
        "basedOn",
        "participant",
        "requestedPeriod",
    }
)
_PRIMITIVES = frozenset(
    {
        "id",
        "implicitRules",
        "language",
        "status",
        "priority",
        "description",
        "start",
        "end",
        "minutesDuration",
        "created",
        "comment",
        "patientInstruction",
    }
)
PARTICIPANT_ELEMENTS = _ELEMENT_BASE | {"modifierExtension", "type", "actor", "required", "status", "period"}
META_ELEMENTS = _ELEMENT_BASE | {"versionId", "lastUpdated", "source", "profile", "security", "tag"}
CODING_ELEMENTS = _ELEMENT_BASE | {"system", "version", "code", "display", "userSelected"}
CODEABLE_CONCEPT_ELEMENTS = _ELEMENT_BASE | {"coding", "text"}
REFERENCE_ELEMENTS = _ELEMENT_BASE | {"reference", "type", "identifier", "display"}
IDENTIFIER_ELEMENTS = _ELEMENT_BASE | {"use", "type", "system", "value", "period", "assigner"}
PERIOD_ELEMENTS = _ELEMENT_BASE | {"start", "end"}
NARRATIVE_ELEMENTS = _ELEMENT_BASE | {"status", "div"}

_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_ZONE = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
INSTANT = re.compile(rf"^{_YEAR}-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T{_TIME}{_ZONE}$")
DATE_TIME = re.compile(rf"^{_YEAR}(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T{_TIME}{_ZONE})?)?)?$")
RESOURCE_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
CODE = re.compile(r"^[^\s]+( [^\s]+)*$")
_RELATIVE_REFERENCE = re.compile(
    r"^(?:(?P<base>https?://\S+?)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$"
)

Issue = dict[str, Any]


def _issue(code: str, diagnostics: str, expression: str | None = None, severity: str = "error") -> Issue:
    issue: Issue = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return issue


def operation_outcome(*issues: Issue) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": list(issues)}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _instant(when: dt.datetime) -> str:
    return when.astimezone(BEIJING).isoformat(timespec="milliseconds")


def _parse_instant(value: str) -> dt.datetime:
    """An R4 instant/dateTime with a time part (the regex has been checked) as an aware datetime."""
    text = value.replace("Z", "+00:00")
    match = re.match(r"^(.*T\d\d:\d\d:)(\d\d)(\.\d+)?(.*)$", text)
    if match:
        seconds = min(int(match.group(2)), 59)  # a leap second is valid FHIR, not a valid datetime
        fraction = (match.group(3) or "")[:7]
        text = f"{match.group(1)}{seconds:02d}{fraction}{match.group(4)}"
    return dt.datetime.fromisoformat(text)


# -- validation ----------------------------------------------------------------------------------


class _Validator:
    """Collects the issues of one Appointment (R4 structure, datatypes and invariants)."""

    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def error(self, code: str, diagnostics: str, expression: str) -> None:
        self.issues.append(_issue(code, diagnostics, expression))

    def empty_values(self, value: Any, path: str) -> None:
        """ele-1 and the JSON format: no null, no empty string, array or object anywhere."""
        if value is None:
            self.error("structure", "null is not a valid FHIR value (leave the element out)", path)
        elif isinstance(value, str) and not value.strip():
            self.error("structure", "an empty or blank string is not a valid FHIR value", path)
        elif isinstance(value, list):
            if not value:
                self.error("structure", "an empty array is not valid FHIR JSON (leave the element out)", path)
            for index, item in enumerate(value):
                self.empty_values(item, f"{path}[{index}]")
        elif isinstance(value, dict):
            if not value:
                self.error("structure", "an empty object is not valid FHIR JSON (leave the element out)", path)
            for key, item in value.items():
                if key != "div":
                    self.empty_values(item, f"{path}.{key}")

    def known(self, value: dict[str, Any], allowed: frozenset[str], path: str, primitives: frozenset[str]) -> None:
        for key in value:
            base = key[1:] if key.startswith("_") else None
            if key in allowed or (base is not None and base in primitives):
                continue
            self.error("structure", f"unrecognised element '{key}'", f"{path}.{key}")

    def obj(self, value: Any, path: str) -> dict[str, Any] | None:
        if isinstance(value, dict):
            return value
        if value is not None:
            self.error("structure", "must be a JSON object", path)
        return None

    def array(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if isinstance(value, list):
            return value
        self.error("structure", "must be a JSON array (the element repeats)", path)
        return []

    def string(self, value: Any, path: str) -> str | None:
        if value is None or isinstance(value, str):
            return value
        self.error("value", "must be a JSON string", path)
        return None

    def code(self, value: Any, path: str, allowed: frozenset[str] | None = None) -> str | None:
        text = self.string(value, path)
        if text is None:
            return None
        if not CODE.match(text):
            self.error("value", f"'{text}' is not a valid code", path)
        elif allowed is not None and text not in allowed:
            self.error("code-invalid", f"'{text}' is not one of: {', '.join(sorted(allowed))}", path)
            return None
        return text

    def integer(self, value: Any, path: str, minimum: int) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            self.error("value", "must be a JSON integer", path)
        elif value < minimum:
            self.error("value", f"must be at least {minimum}", path)

    def instant(self, value: Any, path: str) -> dt.datetime | None:
        text = self.string(value, path)
        if text is None:
            return None
        if not INSTANT.match(text):
            self.error("value", f"'{text}' is not an instant (date, time to the second and a time zone)", path)
            return None
        try:
            return _parse_instant(text)
        except ValueError:
            self.error("value", f"'{text}' is not a real date and time", path)
            return None

    def date_time(self, value: Any, path: str) -> None:
        text = self.string(value, path)
        if text is None:
            return
        if not DATE_TIME.match(text):
            self.error("value", f"'{text}' is not a dateTime (a time needs seconds and a time zone)", path)
            return
        try:
            if "T" in text:
                _parse_instant(text)
            elif len(text) == 10:
                dt.date.fromisoformat(text)
        except ValueError:
            self.error("value", f"'{text}' is not a real date", path)

    def extensions(self, resource: dict[str, Any], path: str) -> None:
        for key in ("extension", "modifierExtension"):
            for index, ext in enumerate(self.array(resource.get(key), f"{path}.{key}")):
                where = f"{path}.{key}[{index}]"
                ext_obj = self.obj(ext, where)
                if ext_obj is None:
                    continue
                url = self.string(ext_obj.get("url"), f"{where}.url")
                if url is None:
                    self.error("required", "an extension needs its url", where)
                values = [k for k in ext_obj if k.startswith("value")]
                nested = "extension" in ext_obj
                if len(values) > 1:
                    self.error("structure", "an extension has at most one value[x]", where)
                if bool(values) == nested:
                    self.error("invariant", "ext-1: an extension has either extensions or a value[x], not both", where)
                if nested:
                    self.extensions(ext_obj, where)
                if key == "modifierExtension" and url is not None:
                    self.error("not-supported", f"modifier extension '{url}' is not understood by this server", where)

    def coding(self, value: Any, path: str) -> None:
        coding = self.obj(value, path)
        if coding is None:
            return
        self.known(coding, CODING_ELEMENTS, path, frozenset({"system", "version", "code", "display"}))
        self.string(coding.get("system"), f"{path}.system")
        self.string(coding.get("display"), f"{path}.display")
        self.code(coding.get("code"), f"{path}.code")
        if "userSelected" in coding and not isinstance(coding["userSelected"], bool):
            self.error("value", "must be true or false", f"{path}.userSelected")

    def codeable_concept(self, value: Any, path: str) -> None:
        concept = self.obj(value, path)
        if concept is None:
            return
        self.known(concept, CODEABLE_CONCEPT_ELEMENTS, path, frozenset({"text"}))
        for index, coding in enumerate(self.array(concept.get("coding"), f"{path}.coding")):
            self.coding(coding, f"{path}.coding[{index}]")
        self.string(concept.get("text"), f"{path}.text")

    def period(self, value: Any, path: str) -> None:
        period = self.obj(value, path)
        if period is None:
            return
        self.known(period, PERIOD_ELEMENTS, path, frozenset({"start", "end"}))
        self.date_time(period.get("start"), f"{path}.start")
        self.date_time(period.get("end"), f"{path}.end")

    def identifier(self, value: Any, path: str) -> None:
        ident = self.obj(value, path)
        if ident is None:
            return
        self.known(ident, IDENTIFIER_ELEMENTS, path, frozenset({"use", "system", "value"}))
        self.code(ident.get("use"), f"{path}.use", IDENTIFIER_USES)
        self.codeable_concept(ident.get("type"), f"{path}.type")
        self.string(ident.get("system"), f"{path}.system")
        self.string(ident.get("value"), f"{path}.value")
        self.period(ident.get("period"), f"{path}.period")
        self.reference(ident.get("assigner"), f"{path}.assigner")

    def reference(self, value: Any, path: str, types: frozenset[str] | None = None) -> None:
        ref = self.obj(value, path)
        if ref is None:
            return
        self.known(ref, REFERENCE_ELEMENTS, path, frozenset({"reference", "type", "display"}))
        self.string(ref.get("display"), f"{path}.display")
        self.identifier(ref.get("identifier"), f"{path}.identifier")
        target = self.string(ref.get("reference"), f"{path}.reference")
        kind = self.string(ref.get("type"), f"{path}.type")
        if target is not None:
            match = _RELATIVE_REFERENCE.match(target)
            if match:
                kind = match.group("type")
            elif not target.startswith(("#", "urn:uuid:", "urn:oid:")):
                self.error("value", f"'{target}' is not a resource reference (Type/id, an URL or #contained)", path)
        if types is not None and kind is not None and kind not in types:
            self.error(
                "value", f"a reference to {kind} is not allowed here (allowed: {', '.join(sorted(types))})", path
            )
        if target is None and "identifier" not in ref and "display" not in ref:
            self.error("invariant", "ref-1: a reference needs a reference, an identifier or a display", path)

    def appointment(self, resource: dict[str, Any]) -> None:
        path = "Appointment"
        self.empty_values(resource, path)
        self.known(resource, APPOINTMENT_ELEMENTS, path, _PRIMITIVES)
        rid = self.string(resource.get("id"), f"{path}.id")
        if rid is not None and not RESOURCE_ID.match(rid):
            self.error("value", f"'{rid}' is not a valid resource id ([A-Za-z0-9-.]{{1,64}})", f"{path}.id")
        meta = self.obj(resource.get("meta"), f"{path}.meta")
        if meta is not None:
            self.known(meta, META_ELEMENTS, f"{path}.meta", frozenset({"versionId", "lastUpdated", "source"}))
        text = self.obj(resource.get("text"), f"{path}.text")
        if text is not None:
            self.known(text, NARRATIVE_ELEMENTS, f"{path}.text", frozenset({"status"}))
            self.code(text.get("status"), f"{path}.text.status", NARRATIVE_STATUSES)
            div = text.get("div")
            if not isinstance(div, str) or not div.startswith("<div"):
                self.error("value", "the narrative needs an XHTML div", f"{path}.text.div")
        for index, contained in enumerate(self.array(resource.get("contained"), f"{path}.contained")):
            if not isinstance(contained, dict) or not isinstance(contained.get("resourceType"), str):
                self.error("structure", "a contained resource needs its resourceType", f"{path}.contained[{index}]")
        self.extensions(resource, path)
        for index, ident in enumerate(self.array(resource.get("identifier"), f"{path}.identifier")):
            self.identifier(ident, f"{path}.identifier[{index}]")

        status = self.code(resource.get("status"), f"{path}.status", APPOINTMENT_STATUSES)
        if "status" not in resource:
            self.error("required", "Appointment.status is required (1..1)", f"{path}.status")

        self.codeable_concept(resource.get("cancelationReason"), f"{path}.cancelationReason")
        if "cancelationReason" in resource and status is not None and status not in CANCELLED_STATUSES:
            self.error(
                "invariant",
                "app-4: a cancelationReason is only used for appointments that were cancelled or are a no-show",
                f"{path}.cancelationReason",
            )
        for key in ("serviceCategory", "serviceType", "specialty", "reasonCode"):
            for index, concept in enumerate(self.array(resource.get(key), f"{path}.{key}")):
                self.codeable_concept(concept, f"{path}.{key}[{index}]")
        self.codeable_concept(resource.get("appointmentType"), f"{path}.appointmentType")
        for key in ("reasonReference", "supportingInformation", "slot", "basedOn"):
            for index, ref in enumerate(self.array(resource.get(key), f"{path}.{key}")):
                self.reference(ref, f"{path}.{key}[{index}]")
        self.integer(resource.get("priority"), f"{path}.priority", 0)
        self.integer(resource.get("minutesDuration"), f"{path}.minutesDuration", 1)
        for key in ("description", "comment", "patientInstruction", "implicitRules"):
            self.string(resource.get(key), f"{path}.{key}")
        self.code(resource.get("language"), f"{path}.language")
        self.date_time(resource.get("created"), f"{path}.created")
        for index, period in enumerate(self.array(resource.get("requestedPeriod"), f"{path}.requestedPeriod")):
            self.period(period, f"{path}.requestedPeriod[{index}]")

        start = self.instant(resource.get("start"), f"{path}.start")
        end = self.instant(resource.get("end"), f"{path}.end")
        if ("start" in resource) != ("end" in resource):
            self.error("invariant", "app-2: either start and end are specified, or neither", path)
        if "start" not in resource and status is not None and status not in UNSCHEDULED_STATUSES:
            self.error(
                "invariant", "app-3: only proposed, cancelled or waitlist appointments may lack start and end", path
            )
        if start is not None and end is not None and end < start:
            self.error("business-rule", "the appointment ends before it starts (end < start)", f"{path}.end")

        participants = self.array(resource.get("participant"), f"{path}.participant")
        if "participant" not in resource:
            self.error("required", "Appointment.participant is required (1..*)", f"{path}.participant")
        for index, value in enumerate(participants):
            where = f"{path}.participant[{index}]"
            participant = self.obj(value, where)
            if participant is None:
                continue
            self.known(participant, PARTICIPANT_ELEMENTS, where, frozenset({"required", "status"}))
            self.extensions(participant, where)
            for t_index, concept in enumerate(self.array(participant.get("type"), f"{where}.type")):
                self.codeable_concept(concept, f"{where}.type[{t_index}]")
            self.reference(participant.get("actor"), f"{where}.actor", ACTOR_TYPES)
            self.code(participant.get("required"), f"{where}.required", PARTICIPANT_REQUIRED)
            self.code(participant.get("status"), f"{where}.status", PARTICIPANT_STATUSES)
            if "status" not in participant:
                self.error("required", "Appointment.participant.status is required (1..1)", f"{where}.status")
            if "type" not in participant and "actor" not in participant:
                self.error("invariant", "app-1: either the type or actor on the participant SHALL be specified", where)
            self.period(participant.get("period"), f"{where}.period")


CHARGE_STATUSES = frozenset(
    {"planned", "billable", "not-billable", "aborted", "billed", "entered-in-error", "unknown"}
)
REQUEST_STATUSES = frozenset({"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"})
REQUEST_INTENTS = frozenset(
    {"proposal", "plan", "directive", "order", "original-order", "reflex-order", "filler-order", "instance-order",
     "option"}
)
_RESOURCE_BASE = frozenset(
    {"resourceType", "id", "meta", "implicitRules", "language", "text", "contained", "extension", "modifierExtension",
     "identifier"}
)
CHARGE_ITEM_ELEMENTS = _RESOURCE_BASE | {
    "definitionUri", "definitionCanonical", "status", "partOf", "code", "subject", "context", "occurrenceDateTime",
    "occurrencePeriod", "occurrenceTiming", "performer", "performingOrganization", "requestingOrganization",
    "costCenter", "quantity", "bodysite", "factorOverride", "priceOverride", "overrideReason", "enterer",
    "enteredDate", "reason", "service", "productReference", "productCodeableConcept", "account", "note",
    "supportingInformation",
}
SERVICE_REQUEST_ELEMENTS = _RESOURCE_BASE | {
    "instantiatesCanonical", "instantiatesUri", "basedOn", "replaces", "requisition", "status", "intent",
    "category", "priority", "doNotPerform", "code", "orderDetail", "quantityQuantity", "quantityRatio",
    "quantityRange", "subject", "encounter", "occurrenceDateTime", "occurrencePeriod", "occurrenceTiming",
    "asNeededBoolean", "asNeededCodeableConcept", "authoredOn", "requester", "performerType", "performer",
    "locationCode", "locationReference", "reasonCode", "reasonReference", "insurance", "supportingInfo",
    "specimen", "bodySite", "note", "patientInstruction", "relevantHistory",
}
_OTHER_PRIMITIVES = frozenset(
    {"id", "implicitRules", "language", "status", "intent", "priority", "occurrenceDateTime", "enteredDate",
     "authoredOn", "factorOverride", "overrideReason", "patientInstruction", "doNotPerform"}
)
MONEY_ELEMENTS = _ELEMENT_BASE | {"value", "currency"}
QUANTITY_ELEMENTS = _ELEMENT_BASE | {"value", "comparator", "unit", "system", "code"}
ANNOTATION_ELEMENTS = _ELEMENT_BASE | {"authorReference", "authorString", "time", "text"}


class _OtherValidator(_Validator):
    """ChargeItem and ServiceRequest: the elements this HIS reads and their R4 rules."""

    def common(self, resource: dict[str, Any], kind: str, allowed: frozenset[str]) -> None:
        self.empty_values(resource, kind)
        self.known(resource, allowed, kind, _OTHER_PRIMITIVES)
        rid = self.string(resource.get("id"), f"{kind}.id")
        if rid is not None and not RESOURCE_ID.match(rid):
            self.error("value", f"'{rid}' is not a valid resource id", f"{kind}.id")
        self.extensions(resource, kind)
        for index, ident in enumerate(self.array(resource.get("identifier"), f"{kind}.identifier")):
            self.identifier(ident, f"{kind}.identifier[{index}]")
        for index, note in enumerate(self.array(resource.get("note"), f"{kind}.note")):
            annotation = self.obj(note, f"{kind}.note[{index}]")
            if annotation is not None:
                self.known(annotation, ANNOTATION_ELEMENTS, f"{kind}.note[{index}]", frozenset({"text", "time"}))
                if self.string(annotation.get("text"), f"{kind}.note[{index}].text") is None:
                    self.error("required", "Annotation.text is required (1..1)", f"{kind}.note[{index}].text")
        self.codeable_concept(resource.get("code"), f"{kind}.code")
        if "code" not in resource:
            self.error("required", f"{kind}.code is required (1..1)", f"{kind}.code")
        self.reference(resource.get("subject"), f"{kind}.subject", frozenset({"Patient", "Group"}))
        if "subject" not in resource:
            self.error("required", f"{kind}.subject is required (1..1)", f"{kind}.subject")
        self.date_time(resource.get("occurrenceDateTime"), f"{kind}.occurrenceDateTime")

    def charge_item(self, resource: dict[str, Any]) -> None:
        kind = "ChargeItem"
        self.common(resource, kind, CHARGE_ITEM_ELEMENTS)
        self.code(resource.get("status"), f"{kind}.status", CHARGE_STATUSES)
        if "status" not in resource:
            self.error("required", "ChargeItem.status is required (1..1)", f"{kind}.status")
        self.reference(resource.get("context"), f"{kind}.context", frozenset({"Encounter", "EpisodeOfCare"}))
        for key in ("supportingInformation", "service", "partOf", "account"):
            for index, ref in enumerate(self.array(resource.get(key), f"{kind}.{key}")):
                self.reference(ref, f"{kind}.{key}[{index}]")
        self.date_time(resource.get("enteredDate"), f"{kind}.enteredDate")
        quantity = self.obj(resource.get("quantity"), f"{kind}.quantity")
        if quantity is not None:
            self.known(quantity, QUANTITY_ELEMENTS, f"{kind}.quantity", frozenset({"value", "unit"}))
            self._decimal(quantity.get("value"), f"{kind}.quantity.value")
        money = self.obj(resource.get("priceOverride"), f"{kind}.priceOverride")
        if money is not None:
            self.known(money, MONEY_ELEMENTS, f"{kind}.priceOverride", frozenset({"value", "currency"}))
            self._decimal(money.get("value"), f"{kind}.priceOverride.value")
            currency = self.code(money.get("currency"), f"{kind}.priceOverride.currency")
            if currency is not None and currency != "CNY":
                self.error("business-rule", "this HIS bills in CNY only", f"{kind}.priceOverride.currency")

    def service_request(self, resource: dict[str, Any]) -> None:
        kind = "ServiceRequest"
        self.common(resource, kind, SERVICE_REQUEST_ELEMENTS)
        self.code(resource.get("status"), f"{kind}.status", REQUEST_STATUSES)
        if "status" not in resource:
            self.error("required", "ServiceRequest.status is required (1..1)", f"{kind}.status")
        self.code(resource.get("intent"), f"{kind}.intent", REQUEST_INTENTS)
        if "intent" not in resource:
            self.error("required", "ServiceRequest.intent is required (1..1)", f"{kind}.intent")
        self.date_time(resource.get("authoredOn"), f"{kind}.authoredOn")
        self.reference(resource.get("requester"), f"{kind}.requester")
        self.reference(resource.get("encounter"), f"{kind}.encounter", frozenset({"Encounter"}))

    def _decimal(self, value: Any, path: str) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            self.error("value", "must be a JSON number", path)


def validate_other(kind: str, resource: Any) -> tuple[int, list[Issue]]:
    """Like :func:`validate_appointment`, for ChargeItem and ServiceRequest."""
    if not isinstance(resource, dict):
        return 400, [_issue("structure", "the body must be a JSON object (a FHIR resource)")]
    if resource.get("resourceType") != kind:
        return 400, [_issue("invalid", f"expected resourceType {kind}, got {resource.get('resourceType')!r}",
                            "resourceType")]
    validator = _OtherValidator()
    if kind == "ChargeItem":
        validator.charge_item(resource)
    else:
        validator.service_request(resource)
    return (422, validator.issues) if validator.issues else (0, [])


def validate_appointment(resource: Any) -> tuple[int, list[Issue]]:
    """``(0, [])`` for a valid R4 Appointment, else the HTTP status (400 unreadable, 422 invalid)
    and the issues of the OperationOutcome."""
    if not isinstance(resource, dict):
        return 400, [_issue("structure", "the body must be a JSON object (a FHIR resource)")]
    kind = resource.get("resourceType")
    if kind != "Appointment":
        return 400, [_issue("invalid", f"expected resourceType Appointment, got {kind!r}", "resourceType")]
    validator = _Validator()
    validator.appointment(resource)
    return (422, validator.issues) if validator.issues else (0, [])


# -- search --------------------------------------------------------------------------------------


class SearchError(Exception):
    """A search the server cannot carry out (400 with an OperationOutcome)."""


def split_escaped(text: str, separator: str) -> list[str]:
    """Split on ``separator`` unless escaped with a backslash; escapes stay for the next split."""
    parts, current, index = [], [], 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            current.append(text[index : index + 2])
            index += 2
            continue
        if char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    parts.append("".join(current))
    return parts


def unescape(text: str) -> str:
    return re.sub(r"\\([\\,|$])", r"\1", text)


_DATE_PREFIXES = ("eq", "ne", "lt", "gt", "le", "ge", "sa", "eb")
_SEARCH_PARAMETERS = frozenset(
    {"_id", "identifier", "patient", "practitioner", "location", "actor", "status", "date", "_count", "_offset"}
)
_IGNORED_PARAMETERS = frozenset({"_format", "_pretty"})
_REFERENCE_PARAMETERS = {"patient": "Patient", "practitioner": "Practitioner", "location": "Location", "actor": None}


def _date_range(value: str) -> tuple[dt.datetime, dt.datetime]:
    """The half-open range ``[low, high)`` a search date stands for (Beijing time without a zone)."""
    match = re.match(
        r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$", value
    )
    if not match:
        raise SearchError(f"'{value}' is not a search date (YYYY, YYYY-MM, YYYY-MM-DD or a dateTime)")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    tz = dt.UTC if zone == "Z" else BEIJING
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        tz = dt.timezone(sign * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    try:
        low = dt.datetime(int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0), tzinfo=tz)
        if second is not None:
            low = low.replace(second=int(second), microsecond=int(float(fraction or "0") * 1_000_000))
    except ValueError as err:
        raise SearchError(f"'{value}' is not a real date: {err}") from None
    if fraction:
        high = low + dt.timedelta(microseconds=1)
    elif second is not None:
        high = low + dt.timedelta(seconds=1)
    elif minute is not None:
        high = low + dt.timedelta(minutes=1)
    elif day is not None:
        high = low + dt.timedelta(days=1)
    elif month is not None:
        high = (low.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    else:
        high = low.replace(year=low.year + 1)
    return low, high


def _date_matches(start: dt.datetime, prefix: str, low: dt.datetime, high: dt.datetime) -> bool:
    # the target (Appointment.start, an instant) is a point; R4 search.html#prefix on ranges
    match prefix:
        case "eq":
            return low <= start < high
        case "ne":
            return not low <= start < high
        case "lt" | "eb":
            return start < low
        case "gt" | "sa":
            return start >= high
        case "le":
            return start < high
        case "ge":
            return start >= low
    raise SearchError(f"unsupported date prefix '{prefix}'")


def _reference_target(value: str, resource_type: str | None) -> tuple[str | None, str]:
    """``(type, id)`` that a reference search value stands for."""
    match = _RELATIVE_REFERENCE.match(value)
    if match:
        if resource_type is not None and match.group("type") != resource_type:
            raise SearchError(f"'{value}' is not a reference to {resource_type}")
        return match.group("type"), match.group("id")
    if RESOURCE_ID.match(value):
        return resource_type, value
    raise SearchError(f"'{value}' is not a reference (Type/id, id or an absolute URL)")


def _actor_targets(resource: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for participant in resource.get("participant") or []:
        actor = participant.get("actor") if isinstance(participant, dict) else None
        target = actor.get("reference") if isinstance(actor, dict) else None
        match = _RELATIVE_REFERENCE.match(target) if isinstance(target, str) else None
        if match:
            yield match.group("type"), match.group("id")


def _matches_one(resource: Mapping[str, Any], name: str, value: str) -> bool:
    """One parameter, one value (of a comma-separated OR list)."""
    if name == "_id":
        return resource.get("id") == unescape(value)
    if name == "status":
        return resource.get("status") == unescape(value)
    if name == "identifier":
        parts = split_escaped(value, "|")
        if len(parts) > 2:
            raise SearchError(f"'{value}' is not a token (system|value)")
        system, code = (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
        system = unescape(system) if system is not None else None
        code = unescape(code)
        for ident in resource.get("identifier") or []:
            if not isinstance(ident, dict):
                continue
            if system is None:
                if ident.get("value") == code:
                    return True
            elif system == "":
                if "system" not in ident and ident.get("value") == code:
                    return True
            elif ident.get("system") == system and (code == "" or ident.get("value") == code):
                return True
        return False
    if name in _REFERENCE_PARAMETERS:
        wanted_type, wanted_id = _reference_target(unescape(value), _REFERENCE_PARAMETERS[name])
        return any(
            rid == wanted_id and (wanted_type is None or rtype == wanted_type)
            for rtype, rid in _actor_targets(resource)
        )
    if name == "date":
        prefix = value[:2] if value[:2] in _DATE_PREFIXES else "eq"
        low, high = _date_range(value[2:] if value[:2] in _DATE_PREFIXES else value)
        start = resource.get("start")
        if not isinstance(start, str):
            return False
        try:
            return _date_matches(_parse_instant(start), prefix, low, high)
        except ValueError:
            return False
    raise SearchError(f"unknown search parameter '{name}'")


def _matches(resource: Mapping[str, Any], criteria: list[tuple[str, str]]) -> bool:
    for key, value in criteria:
        name, _, modifier = key.partition(":")
        if name in ("_count", "_offset"):
            continue
        if modifier:
            raise SearchError(f"the modifier ':{modifier}' of '{name}' is not supported")
        if not any(_matches_one(resource, name, option) for option in split_escaped(value, ",")):
            return False
    return True


OTHER_TYPES = ("ChargeItem", "ServiceRequest")
_OTHER_SEARCH = {
    "ChargeItem": frozenset({"_id", "identifier", "patient", "subject", "context", "_count", "_offset"}),
    "ServiceRequest": frozenset({"_id", "identifier", "patient", "subject", "encounter", "_count", "_offset"}),
}


def _element_reference(resource: Mapping[str, Any], element: str) -> tuple[str, str] | None:
    ref = resource.get(element)
    target = ref.get("reference") if isinstance(ref, dict) else None
    match = _RELATIVE_REFERENCE.match(target) if isinstance(target, str) else None
    return (match.group("type"), match.group("id")) if match else None


def _matches_other(resource: Mapping[str, Any], criteria: list[tuple[str, str]]) -> bool:
    for key, value in criteria:
        name, _, modifier = key.partition(":")
        if name in ("_count", "_offset"):
            continue
        if modifier:
            raise SearchError(f"the modifier ':{modifier}' of '{name}' is not supported")
        options = split_escaped(value, ",")
        if name in ("_id", "identifier"):
            if not any(_matches_one(resource, name, option) for option in options):
                return False
            continue
        element = {"patient": "subject", "subject": "subject", "context": "context", "encounter": "encounter"}[name]
        found = _element_reference(resource, element)
        if found is None:
            return False
        targets = [_reference_target(unescape(option), "Patient" if name == "patient" else None) for option in options]
        if not any(rid == found[1] and rtype in (None, found[0]) for rtype, rid in targets):
            return False
    return True


# -- the server ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Stored:
    """One Appointment with every version it had, oldest first."""

    id: str
    versions: list[dict[str, Any]]

    @property
    def current(self) -> dict[str, Any]:
        return self.versions[-1]

    @property
    def version(self) -> str:
        return str(self.current["meta"]["versionId"])


@dataclasses.dataclass
class Fault:
    kind: Literal["error", "unavailable", "timeout"]
    count: int
    accept: bool = False


@dataclasses.dataclass
class Reply:
    """What the shell sends back: a status, headers and a body, or nothing at all (``hang``)."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    hang: bool = False


def _content(resource: Mapping[str, Any]) -> dict[str, Any]:
    """What an update may change: the resource without id, versionId and lastUpdated."""
    content = {k: v for k, v in resource.items() if k != "id"}
    meta = {k: v for k, v in (content.pop("meta", None) or {}).items() if k not in ("versionId", "lastUpdated")}
    if meta:
        content["meta"] = meta
    return content


def _fhir(status: int, body: Mapping[str, Any] | None, headers: dict[str, str] | None = None) -> Reply:
    payload = orjson.dumps(body) if body is not None else b""
    all_headers = {"content-type": FHIR_JSON} if body is not None else {}
    return Reply(status, payload, all_headers | (headers or {}))


def _outcome(status: int, code: str, diagnostics: str, headers: dict[str, str] | None = None) -> Reply:
    return _fhir(status, operation_outcome(_issue(code, diagnostics)), headers)


class HisSimulator:
    """The server's state and rules (no I/O: :class:`HisApp` serves it)."""

    def __init__(self, *, token: str, clock: Callable[[], dt.datetime] = _now) -> None:
        self.token = token
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        self.appointments: dict[str, Stored] = {}
        #: identifier value -> ids of the appointments that carried it (a lookup index)
        self._by_identifier: dict[str, set[str]] = {}
        self.requests: collections.deque[dict[str, Any]] = collections.deque(maxlen=1000)
        self.faults: collections.deque[Fault] = collections.deque()
        self._ids = itertools.count(1001)
        self.others: dict[str, dict[str, Stored]] = {kind: {} for kind in OTHER_TYPES}
        self._other_ids = itertools.count(5001)

    def _new_id(self) -> str:
        while (rid := str(next(self._ids))) in self.appointments:
            pass
        return rid

    # -- the FHIR API --------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """One request to ``/fhir/...``; ``headers`` have lower-case names."""
        base = f"http://{headers.get('host', 'localhost')}{FHIR_BASE_PATH}"
        reply = self._handle(method, path[len(FHIR_BASE_PATH) :].strip("/"), query, headers, body, base)
        status = None if reply.hang else reply.status
        self.requests.append(
            {"at": _instant(self.clock()), "method": method, "path": path, "query": query, "status": status}
        )
        return reply

    def _handle(self, method: str, route: str, query: str, headers: Mapping[str, str], body: bytes, base: str) -> Reply:
        fault = self.faults[0] if self.faults else None
        if fault is not None:
            fault.count -= 1
            if fault.count <= 0:
                self.faults.popleft()
            if fault.kind == "timeout":
                if fault.accept:  # carried out, but the answer never leaves
                    self._serve(method, route, query, headers, body, base)
                return Reply(0, hang=True)
            if fault.kind == "unavailable":
                return _outcome(503, "transient", "the HIS is temporarily unavailable", {"retry-after": "1"})
            return _outcome(500, "exception", "internal server error (simulated fault)")
        return self._serve(method, route, query, headers, body, base)

    def _serve(self, method: str, route: str, query: str, headers: Mapping[str, str], body: bytes, base: str) -> Reply:
        if method == "GET" and route == "metadata":
            return _fhir(200, self._capability_statement())
        scheme, _, credential = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(credential.strip().encode(), self.token.encode()):
            what = "no bearer token" if scheme.lower() != "bearer" else "the bearer token is not valid"
            return _outcome(401, "login", f"authentication failed: {what}", {"www-authenticate": 'Bearer realm="his"'})
        return self._handle_authorized(method, route, query, headers, body, base)

    def _handle_authorized(
        self, method: str, route: str, query: str, headers: Mapping[str, str], body: bytes, base: str
    ) -> Reply:
        parts = route.split("/") if route else []
        if not parts:
            return _outcome(405, "not-supported", "batch/transaction and whole-system operations are not supported")
        params = parse_qsl(query, keep_blank_values=True)
        strict = "handling=strict" in headers.get("prefer", "").replace(" ", "")
        if parts[0] in OTHER_TYPES:
            try:
                return self._handle_other(method, parts[0], parts[1:], params, strict, headers, body, base)
            except SearchError as err:
                return _outcome(400, "invalid", str(err))
        if parts[0] != "Appointment":
            return _outcome(404, "not-supported", f"resource type '{parts[0]}' is not supported by this server")
        try:
            match method, parts[1:]:
                case "GET", []:
                    return self._search(params, strict, base)
                case "POST", ["_search"]:
                    form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
                    return self._search(params + form, strict, base)
                case "PUT", []:
                    return self._conditional_update(params, headers, body, base)
                case "POST", []:
                    return self._create(headers, body, base)
                case "GET", [rid]:
                    return self._read(rid, base)
                case "PUT", [rid]:
                    return self._update(rid, headers, body, base)
                case "GET", [rid, "_history"]:
                    return self._history(rid, base)
                case "GET", [rid, "_history", vid]:
                    return self._vread(rid, vid, base)
        except SearchError as err:
            return _outcome(400, "invalid", str(err))
        return _outcome(405, "not-supported", f"{method} /{route} is not supported")

    def _body(self, headers: Mapping[str, str], body: bytes) -> tuple[dict[str, Any] | None, Reply | None]:
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in ("application/fhir+json", "application/json"):
            return None, _outcome(415, "not-supported", f"content type '{content_type}' is not application/fhir+json")
        try:
            resource = orjson.loads(body)
        except orjson.JSONDecodeError as err:
            return None, _outcome(400, "structure", f"the body is not JSON: {err}")
        status, issues = validate_appointment(resource)
        if status:
            return None, _fhir(status, operation_outcome(*issues))
        return resource, None

    def _criteria(self, params: list[tuple[str, str]], strict: bool) -> list[tuple[str, str]]:
        used = []
        for key, value in params:
            name = key.partition(":")[0]
            if name in _IGNORED_PARAMETERS:
                continue
            if name not in _SEARCH_PARAMETERS:
                if strict:
                    raise SearchError(f"unknown search parameter '{key}' for Appointment")
                continue
            if value == "":
                continue  # an empty value is ignored (R4 search.html)
            used.append((key, value))
        return used

    def _find(self, criteria: list[tuple[str, str]]) -> list[Stored]:
        candidates: Iterable[Stored] = self.appointments.values()
        for key, value in criteria:
            if key == "identifier" and "," not in value:  # the usual lookup: by business identifier
                ids = self._by_identifier.get(value.rpartition("|")[2], ())
                candidates = [self.appointments[i] for i in ids if i in self.appointments]
                break
        return [stored for stored in candidates if _matches(stored.current, criteria)]

    def _search(self, params: list[tuple[str, str]], strict: bool, base: str) -> Reply:
        criteria = self._criteria(params, strict)
        options = dict(criteria)
        try:
            count = min(int(options.get("_count", DEFAULT_PAGE_SIZE)), MAX_PAGE_SIZE)
            offset = int(options.get("_offset", 0))
        except ValueError:
            raise SearchError("_count and _offset must be integers") from None
        if count < 0 or offset < 0:
            raise SearchError("_count and _offset must not be negative")
        found = self._find(criteria)
        filters = [(k, v) for k, v in criteria if k not in ("_count", "_offset")]
        links = [{"relation": "self", "url": self._page_url(base, filters, count, offset)}]
        if offset + count < len(found):
            links.append({"relation": "next", "url": self._page_url(base, filters, count, offset + count)})
        bundle = {
            "resourceType": "Bundle",
            "id": f"search-{len(self.requests) + 1}",
            "meta": {"lastUpdated": _instant(self.clock())},
            "type": "searchset",
            "total": len(found),
            "link": links,
            "entry": [
                {
                    "fullUrl": f"{base}/Appointment/{stored.id}",
                    "resource": stored.current,
                    "search": {"mode": "match"},
                }
                for stored in found[offset : offset + count]
            ],
        }
        if not bundle["entry"]:
            del bundle["entry"]
        return _fhir(200, bundle)

    @staticmethod
    def _page_url(base: str, filters: list[tuple[str, str]], count: int, offset: int) -> str:
        return f"{base}/Appointment?" + urlencode([*filters, ("_count", str(count)), ("_offset", str(offset))])

    def _saved(self, stored: Stored, status: int, headers: Mapping[str, str], base: str) -> Reply:
        """The answer to a create or update, as ``Prefer: return=...`` asks."""
        resource = stored.current
        out = {
            "location": f"{base}/Appointment/{stored.id}/_history/{stored.version}",
            "etag": f'W/"{stored.version}"',
            "last-modified": email.utils.format_datetime(
                dt.datetime.fromisoformat(resource["meta"]["lastUpdated"]).astimezone(dt.UTC), usegmt=True
            ),
        }
        prefer = headers.get("prefer", "").replace(" ", "")
        if "return=minimal" in prefer:
            return _fhir(status, None, out)
        if "return=OperationOutcome" in prefer:
            text = "created" if status == 201 else "updated"
            return _fhir(status, operation_outcome(_issue("informational", text, severity="information")), out)
        return _fhir(status, resource, out)

    def _store(self, rid: str, resource: dict[str, Any]) -> tuple[Stored, bool]:
        """Write ``resource`` as ``rid``; ``(stored, changed)``: a new version only on a change."""
        stored = self.appointments.get(rid)
        if stored is not None and _content(stored.current) == _content(resource):
            return stored, False
        version = 1 if stored is None else int(stored.version) + 1
        meta = dict(resource.get("meta") or {})
        meta.update(versionId=str(version), lastUpdated=_instant(self.clock()))
        saved = {"resourceType": "Appointment", "id": rid, "meta": meta} | {
            k: v for k, v in resource.items() if k not in ("resourceType", "id", "meta")
        }
        if stored is None:
            stored = self.appointments[rid] = Stored(rid, [saved])
        else:
            stored.versions.append(saved)
        for ident in saved.get("identifier") or ():  # stale entries are harmless: _find checks each match
            if isinstance(ident, dict) and isinstance(ident.get("value"), str):
                self._by_identifier.setdefault(ident["value"], set()).add(rid)
        return stored, True

    def _create(self, headers: Mapping[str, str], body: bytes, base: str) -> Reply:
        resource, error = self._body(headers, body)
        if error is not None or resource is None:
            return error or _outcome(400, "invalid", "no resource")
        if condition := headers.get("if-none-exist"):
            found = self._find(self._criteria(parse_qsl(condition.partition("?")[2] or condition), strict=True))
            if len(found) > 1:
                return _outcome(412, "multiple-matches", f"{len(found)} appointments match If-None-Exist")
            if found:
                return self._saved(found[0], 200, headers, base)
        stored, _ = self._store(self._new_id(), resource)  # a create ignores any id in the body
        log.info("created Appointment/%s", stored.id)
        return self._saved(stored, 201, headers, base)

    def _conditional_update(
        self, params: list[tuple[str, str]], headers: Mapping[str, str], body: bytes, base: str
    ) -> Reply:
        criteria = self._criteria(params, strict=True)
        if not [c for c in criteria if c[0] not in ("_count", "_offset")]:
            return _outcome(400, "invalid", "a conditional update needs search criteria (PUT Appointment?...)")
        resource, error = self._body(headers, body)
        if error is not None or resource is None:
            return error or _outcome(400, "invalid", "no resource")
        if not _matches(resource, criteria):
            return _outcome(400, "invalid", "the resource does not match the criteria of its conditional update")
        found = self._find(criteria)
        body_id = resource.get("id")
        if len(found) > 1:
            return _outcome(
                412, "multiple-matches", f"{len(found)} appointments match {urlencode(criteria)}: the update is refused"
            )
        if found:
            if body_id is not None and body_id != found[0].id:
                return _outcome(400, "invalid", f"the resource id {body_id} is not that of the match, {found[0].id}")
            stored, changed = self._store(found[0].id, resource)
            log.info("conditional update of Appointment/%s: %s", stored.id, "changed" if changed else "unchanged")
            return self._saved(stored, 200, headers, base)
        if body_id is not None and body_id in self.appointments:
            return _outcome(400, "invalid", f"Appointment/{body_id} exists and does not match the criteria")
        stored, _ = self._store(body_id or self._new_id(), resource)
        log.info("conditional update created Appointment/%s", stored.id)
        return self._saved(stored, 201, headers, base)

    def _update(self, rid: str, headers: Mapping[str, str], body: bytes, base: str) -> Reply:
        if not RESOURCE_ID.match(rid):
            return _outcome(400, "invalid", f"'{rid}' is not a valid resource id")
        resource, error = self._body(headers, body)
        if error is not None or resource is None:
            return error or _outcome(400, "invalid", "no resource")
        if resource.get("id") != rid:
            return _outcome(400, "invalid", f"the resource id {resource.get('id')!r} is not the id in the URL, {rid}")
        existing = self.appointments.get(rid)
        if if_match := headers.get("if-match"):
            current = f'W/"{existing.version}"' if existing else None
            if if_match.strip() != current:
                return _outcome(412, "conflict", f"version conflict: If-Match {if_match}, current {current}")
        stored, _ = self._store(rid, resource)
        return self._saved(stored, 200 if existing else 201, headers, base)

    def _read(self, rid: str, base: str) -> Reply:
        stored = self.appointments.get(rid)
        if stored is None:
            return _outcome(404, "not-found", f"Appointment/{rid} is not known")
        return self._saved(stored, 200, {}, base)

    def _vread(self, rid: str, vid: str, base: str) -> Reply:
        stored = self.appointments.get(rid)
        version = next((v for v in stored.versions if v["meta"]["versionId"] == vid), None) if stored else None
        if version is None:
            return _outcome(404, "not-found", f"Appointment/{rid}/_history/{vid} is not known")
        return _fhir(200, version, {"etag": f'W/"{vid}"'})

    def _history(self, rid: str, base: str) -> Reply:
        stored = self.appointments.get(rid)
        if stored is None:
            return _outcome(404, "not-found", f"Appointment/{rid} is not known")
        entries = [
            {
                "fullUrl": f"{base}/Appointment/{rid}",
                "resource": version,
                "request": (
                    {"method": "POST", "url": "Appointment"}
                    if version["meta"]["versionId"] == "1"
                    else {"method": "PUT", "url": f"Appointment/{rid}"}
                ),
                "response": {"status": "201" if version["meta"]["versionId"] == "1" else "200"},
            }
            for version in reversed(stored.versions)
        ]
        return _fhir(200, {"resourceType": "Bundle", "type": "history", "total": len(entries), "entry": entries})

    # -- ChargeItem and ServiceRequest ---------------------------------------------------------

    def _handle_other(
        self, method: str, kind: str, rest: list[str], params: list[tuple[str, str]], strict: bool,
        headers: Mapping[str, str], body: bytes, base: str,
    ) -> Reply:
        store = self.others[kind]
        match method, rest:
            case "GET", []:
                return self._search_other(kind, params, strict, base)
            case "GET", [rid]:
                stored = store.get(rid)
                if stored is None:
                    return _outcome(404, "not-found", f"{kind}/{rid} is not known")
                return self._saved_other(kind, stored, 200, {}, base)
            case "PUT", [rid]:
                if not RESOURCE_ID.match(rid):
                    return _outcome(400, "invalid", f"'{rid}' is not a valid resource id")
                resource, error = self._other_body(kind, headers, body)
                if error is not None or resource is None:
                    return error or _outcome(400, "invalid", "no resource")
                if resource.get("id") != rid:
                    return _outcome(400, "invalid", f"the resource id {resource.get('id')!r} is not {rid}")
                existing = store.get(rid)
                if if_match := headers.get("if-match"):
                    current = f'W/"{existing.version}"' if existing else None
                    if if_match.strip() != current:
                        return _outcome(412, "conflict", f"version conflict: If-Match {if_match}, current {current}")
                stored, _ = self._store_other(kind, rid, resource)
                return self._saved_other(kind, stored, 200 if existing else 201, headers, base)
            case "PUT", []:
                criteria = self._other_criteria(kind, params, strict=True)
                if not [c for c in criteria if c[0] not in ("_count", "_offset")]:
                    return _outcome(400, "invalid", f"a conditional update needs search criteria (PUT {kind}?...)")
                resource, error = self._other_body(kind, headers, body)
                if error is not None or resource is None:
                    return error or _outcome(400, "invalid", "no resource")
                if not _matches_other(resource, criteria):
                    return _outcome(400, "invalid", "the resource does not match its conditional update's criteria")
                found = [st for st in store.values() if _matches_other(st.current, criteria)]
                if len(found) > 1:
                    return _outcome(412, "multiple-matches", f"{len(found)} {kind} resources match: update refused")
                rid = found[0].id if found else str(resource.get("id") or self._new_other_id(kind))
                stored, _ = self._store_other(kind, rid, resource)
                return self._saved_other(kind, stored, 200 if found else 201, headers, base)
            case "POST", []:
                resource, error = self._other_body(kind, headers, body)
                if error is not None or resource is None:
                    return error or _outcome(400, "invalid", "no resource")
                stored, _ = self._store_other(kind, self._new_other_id(kind), resource)
                return self._saved_other(kind, stored, 201, headers, base)
        return _outcome(405, "not-supported", f"{method} /{kind}/{'/'.join(rest)} is not supported")

    def _new_other_id(self, kind: str) -> str:
        while (rid := str(next(self._other_ids))) in self.others[kind]:
            pass
        return rid

    def _other_body(self, kind: str, headers: Mapping[str, str], body: bytes) -> tuple[dict[str, Any] | None,
                                                                                         Reply | None]:
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in ("application/fhir+json", "application/json"):
            return None, _outcome(415, "not-supported", f"content type '{content_type}' is not application/fhir+json")
        try:
            resource = orjson.loads(body)
        except orjson.JSONDecodeError as err:
            return None, _outcome(400, "structure", f"the body is not JSON: {err}")
        status, issues = validate_other(kind, resource)
        if status:
            return None, _fhir(status, operation_outcome(*issues))
        return resource, None

    def _other_criteria(self, kind: str, params: list[tuple[str, str]], strict: bool) -> list[tuple[str, str]]:
        used = []
        for key, value in params:
            name = key.partition(":")[0]
            if name in _IGNORED_PARAMETERS:
                continue
            if name not in _OTHER_SEARCH[kind]:
                if strict:
                    raise SearchError(f"unknown search parameter '{key}' for {kind}")
                continue
            if value:
                used.append((key, value))
        return used

    def _search_other(self, kind: str, params: list[tuple[str, str]], strict: bool, base: str) -> Reply:
        criteria = self._other_criteria(kind, params, strict)
        options = dict(criteria)
        try:
            count = min(int(options.get("_count", DEFAULT_PAGE_SIZE)), MAX_PAGE_SIZE)
            offset = int(options.get("_offset", 0))
        except ValueError:
            raise SearchError("_count and _offset must be integers") from None
        if count < 0 or offset < 0:
            raise SearchError("_count and _offset must not be negative")
        found = [st for st in self.others[kind].values() if _matches_other(st.current, criteria)]
        filters = [(k, v) for k, v in criteria if k not in ("_count", "_offset")]

        def page(at: int) -> str:
            return f"{base}/{kind}?" + urlencode([*filters, ("_count", str(count)), ("_offset", str(at))])

        links = [{"relation": "self", "url": page(offset)}]
        if offset + count < len(found):
            links.append({"relation": "next", "url": page(offset + count)})
        bundle: dict[str, Any] = {
            "resourceType": "Bundle", "type": "searchset", "total": len(found), "link": links,
            "entry": [{"fullUrl": f"{base}/{kind}/{st.id}", "resource": st.current, "search": {"mode": "match"}}
                      for st in found[offset : offset + count]],
        }
        if not bundle["entry"]:
            del bundle["entry"]
        return _fhir(200, bundle)

    def _store_other(self, kind: str, rid: str, resource: dict[str, Any]) -> tuple[Stored, bool]:
        store = self.others[kind]
        stored = store.get(rid)
        if stored is not None and _content(stored.current) == _content(resource):
            return stored, False
        version = 1 if stored is None else int(stored.version) + 1
        meta = dict(resource.get("meta") or {})
        meta.update(versionId=str(version), lastUpdated=_instant(self.clock()))
        saved = {"resourceType": kind, "id": rid, "meta": meta} | {
            k: v for k, v in resource.items() if k not in ("resourceType", "id", "meta")
        }
        if stored is None:
            stored = store[rid] = Stored(rid, [saved])
        else:
            stored.versions.append(saved)
        return stored, True

    def _saved_other(self, kind: str, stored: Stored, status: int, headers: Mapping[str, str], base: str) -> Reply:
        out = {"location": f"{base}/{kind}/{stored.id}/_history/{stored.version}", "etag": f'W/"{stored.version}"'}
        if "return=minimal" in headers.get("prefer", "").replace(" ", ""):
            return _fhir(status, None, out)
        return _fhir(status, stored.current, out)

    def seed_charges(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The admin API's ``POST /_sim/charges``: ChargeItems for one patient's visit."""
        patient = str(data["patient_id"])
        if not RESOURCE_ID.match(patient):
            raise ValueError("patient_id is not a valid resource id")
        items = data.get("items")
        if not isinstance(items, list) or not items:
            raise ValueError("items must be a non-empty list")
        created = []
        now = _instant(self.clock())
        for item in items:
            if not isinstance(item, dict):
                raise ValueError("each item is an object")
            amount = int(item["amount_fen"])
            resource: dict[str, Any] = {
                "resourceType": "ChargeItem",
                "extension": [{"url": "https://carehub.example/fhir/StructureDefinition/charge-category",
                               "valueCode": str(item.get("category", "exam"))}],
                "status": str(item.get("status", "billable")),
                "code": {"coding": [{"system": "urn:his:charge-code", "code": str(item["code"]),
                                     "display": str(item["name"])}], "text": str(item["name"])},
                "subject": {"reference": f"Patient/{patient}"},
                "occurrenceDateTime": now,
                "quantity": {"value": int(item.get("quantity", 1))},
                "priceOverride": {"value": round(amount / 100, 2), "currency": "CNY"},
                "enteredDate": now,
            }
            if data.get("visit_id"):
                resource["context"] = {"reference": f"Encounter/E{data['visit_id']}", "identifier": {
                    "system": "urn:carehub:booking", "value": str(data["visit_id"])}}
            if data.get("slip"):
                resource["supportingInformation"] = [{"reference": str(data["slip"])}]
            status, issues = validate_other("ChargeItem", resource)
            if status:
                raise ValueError("; ".join(i["diagnostics"] for i in issues))
            stored, _ = self._store_other("ChargeItem", self._new_other_id("ChargeItem"), resource)
            created.append({"id": stored.id, "resource": stored.current})
        return created

    def _capability_statement(self) -> dict[str, Any]:
        search = [
            {"name": "_id", "type": "token"},
            {"name": "identifier", "type": "token"},
            {"name": "patient", "type": "reference"},
            {"name": "practitioner", "type": "reference"},
            {"name": "location", "type": "reference"},
            {"name": "actor", "type": "reference"},
            {"name": "status", "type": "token"},
            {"name": "date", "type": "date"},
        ]
        interactions = ["read", "vread", "update", "history-instance", "create", "search-type"]
        return {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": "2026-01-01",
            "kind": "instance",
            "software": {"name": "CareHub HIS simulator"},
            "fhirVersion": "4.0.1",
            "format": ["application/fhir+json", "json"],
            "rest": [
                {
                    "mode": "server",
                    "security": {
                        "service": [
                            {
                                "coding": [
                                    {
                                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                        "code": "OAuth",
                                    }
                                ]
                            }
                        ]
                    },
                    "resource": [
                        {
                            "type": "Appointment",
                            "versioning": "versioned-update",
                            "updateCreate": True,
                            "conditionalCreate": True,
                            "conditionalUpdate": True,
                            "interaction": [{"code": code} for code in interactions],
                            "searchParam": search,
                        },
                        *(
                            {
                                "type": kind,
                                "versioning": "versioned-update",
                                "updateCreate": True,
                                "conditionalUpdate": True,
                                "interaction": [{"code": c} for c in ("read", "update", "create", "search-type")],
                                "searchParam": [{"name": n, "type": "reference" if n in (
                                    "patient", "subject", "context", "encounter") else "token"}
                                    for n in sorted(_OTHER_SEARCH[kind] - {"_count", "_offset"})],
                            }
                            for kind in OTHER_TYPES
                        ),
                    ],
                }
            ],
        }

    # -- the admin API -------------------------------------------------------------------------

    def handle_admin(self, method: str, path: str, query: str, body: bytes) -> tuple[int, Any]:
        args = dict(parse_qsl(query))
        data, problem = admin_json(body)
        if data is None:
            return 400, {"error": problem}
        try:
            match method, path:
                case "GET", "/_sim/appointments":
                    return 200, {
                        "appointments": [
                            {"id": s.id, "version": s.version, "history": len(s.versions), "resource": s.current}
                            for s in self.appointments.values()
                        ]
                    }
                case "POST", "/_sim/appointments":
                    if data.get("resourceType") != "Appointment":
                        return 400, {"error": "the body must be an Appointment resource"}
                    rid = str(data.get("id") or self._new_id())
                    stored, _ = self._store(rid, data)
                    return 201, {"id": stored.id, "version": stored.version}
                case "POST", "/_sim/charges":
                    return 201, {"charges": self.seed_charges(data)}
                case "GET", "/_sim/charges":
                    wanted = args.get("patient")
                    return 200, {"charges": [
                        {"id": st.id, "version": st.version, "resource": st.current}
                        for st in self.others["ChargeItem"].values()
                        if wanted is None or st.current.get("subject", {}).get("reference") == f"Patient/{wanted}"
                    ]}
                case "GET", "/_sim/service-requests":
                    return 200, {"service_requests": [
                        {"id": st.id, "version": st.version, "resource": st.current}
                        for st in self.others["ServiceRequest"].values()
                    ]}
                case "GET", "/_sim/requests":
                    limit = int(args.get("limit", "100"))
                    return 200, {"requests": list(reversed(self.requests))[:limit]}
                case "POST", "/_sim/faults":
                    fault = Fault(
                        kind=data.get("kind", "error"), count=int(data.get("count", 1)), accept=bool(data.get("accept"))
                    )
                    if fault.kind not in ("error", "unavailable", "timeout") or fault.count < 1:
                        return 400, {"error": "kind must be error, unavailable or timeout, and count >= 1"}
                    self.faults.append(fault)
                    return 200, {"faults": [dataclasses.asdict(f) for f in self.faults]}
                case "POST", "/_sim/reset":
                    self.reset()
                    return 200, {"reset": True}
                case "GET", "/_sim/health":
                    return 200, {"ok": True, "appointments": len(self.appointments)}
        except (ValueError, TypeError, KeyError) as err:
            return 400, {"error": f"{type(err).__name__}: {err}"}
        return 404, {"error": f"no admin route {method} {path}"}


# -- critical values to CareHub (the LIS's side of MSG-7) ----------------------------------------

CAREHUB_REPORT_PATH = "/api/v1/open/fhir/DiagnosticReport"
INTERPRETATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


def _sm3(data: bytes) -> bytes:
    return bytes.fromhex(_gm_sm3.sm3_hash(_gm_func.bytes_to_list(data)))


def hmac_sm3_hex(key: bytes, message: bytes) -> str:
    """HMAC (RFC 2104, 64-byte blocks) over SM3, hex."""
    if len(key) > 64:
        key = _sm3(key)
    key = key.ljust(64, b"\0")
    inner = _sm3(bytes(b ^ 0x36 for b in key) + message)
    return _sm3(bytes(b ^ 0x5C for b in key) + inner).hex()


def partner_headers(key_id: str, secret: str, method: str, path: str, body: bytes, now: float) -> dict[str, str]:
    """CareHub's partner signature: HMAC-SM3 of ``METHOD\\npath\\ntimestamp\\nnonce\\nsm3(body) hex``."""
    timestamp, nonce = str(int(now)), secrets.token_hex(12)
    text = "\n".join([method.upper(), path, timestamp, nonce, _sm3(body).hex()]).encode()
    return {"X-CareHub-Key": key_id, "X-CareHub-Timestamp": timestamp, "X-CareHub-Nonce": nonce,
            "X-CareHub-Signature": hmac_sm3_hex(secret.encode(), text), "Content-Type": "application/fhir+json"}


def critical_report(data: Mapping[str, Any], report_id: str, issued: dt.datetime) -> dict[str, Any]:
    """A final DiagnosticReport with one contained Observation flagged HH or LL."""
    flag = str(data.get("flag", "HH"))
    if flag not in ("HH", "LL"):
        raise ValueError("flag must be HH or LL")
    patient_id, item = str(data["patient_id"]), str(data["item"])
    observation: dict[str, Any] = {
        "resourceType": "Observation", "id": "obs1", "status": "final", "code": {"text": item},
        "subject": {"reference": f"Patient/{patient_id}"}, "issued": _instant(issued),
        "interpretation": [{"coding": [{"system": INTERPRETATION_SYSTEM, "code": flag,
                                        "display": "Critical high" if flag == "HH" else "Critical low"}]}],
    }
    try:
        observation["valueQuantity"] = {"value": float(data["value"]), "unit": str(data.get("unit", ""))}
    except (TypeError, ValueError):
        observation["valueString"] = str(data["value"])
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport", "id": report_id,
        "identifier": [{"system": "urn:carehub-sim:lis-report", "value": report_id}],
        "status": "final", "code": {"text": item}, "subject": {"reference": f"Patient/{patient_id}"},
        "issued": _instant(issued), "contained": [observation], "result": [{"reference": "#obs1"}],
    }
    if data.get("doctor_id"):
        report["resultsInterpreter"] = [{"reference": f"Practitioner/{data['doctor_id']}"}]
    return report


@dataclasses.dataclass
class CareHubTarget:
    url: str = ""
    key_id: str = ""
    secret: str = ""


# -- the HTTP shell ------------------------------------------------------------------------------

class HisApp(SimulatorApp):
    """The ASGI application around a :class:`HisSimulator`."""

    max_body = MAX_BODY_BYTES

    def __init__(self, sim: HisSimulator, *, hang_seconds: float = 120.0, carehub: CareHubTarget | None = None) -> None:
        self.sim = sim
        self.hang_seconds = hang_seconds
        self.carehub = carehub or CareHubTarget()
        self._reports = itertools.count(1)

    async def publish_critical(self, body: bytes) -> tuple[int, Any]:
        """``POST /_sim/critical``: sign and post a critical DiagnosticReport to CareHub."""
        data, problem = admin_json(body)
        if data is None:
            return 400, {"error": problem}
        target = self.carehub
        if not (target.url and target.key_id and target.secret):
            return 409, {"error": "CareHub is not configured: POST /_sim/carehub {url, key_id, secret} first"}
        report_id = str(data.get("report_id") or f"LIS-{next(self._reports):06d}")
        try:
            resource = critical_report(data, report_id, self.sim.clock())
        except (KeyError, ValueError) as err:
            return 400, {"error": f"patient_id, item, value and flag HH|LL are needed: {err}"}
        raw = orjson.dumps(resource)
        headers = partner_headers(target.key_id, target.secret, "POST", CAREHUB_REPORT_PATH, raw, time.time())
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                answer = await http.post(target.url.rstrip("/") + CAREHUB_REPORT_PATH, content=raw, headers=headers)
        except httpx.HTTPError as err:
            return 502, {"error": f"CareHub did not answer: {err}", "report_id": report_id}
        try:
            content: Any = answer.json()
        except ValueError:
            content = answer.text
        return 200, {"status": answer.status_code, "answer": content, "report_id": report_id}

    async def too_large(self, send: Send) -> None:
        await self._answer(send, _outcome(413, "too-long", f"the body is larger than {MAX_BODY_BYTES} bytes"))

    async def handle(self, request: Request, receive: Receive, send: Send) -> None:
        path = request.path
        if request.method == "POST" and path == "/_sim/critical":
            status, answer = await self.publish_critical(request.body)
            reply = Reply(status, orjson.dumps(answer), {"content-type": "application/json"})
        elif request.method == "POST" and path == "/_sim/carehub":
            data, problem = admin_json(request.body)
            if data is None:
                status, answer = 400, {"error": problem}
            else:
                self.carehub = CareHubTarget(str(data.get("url", "")), str(data.get("key_id", "")),
                                             str(data.get("secret", "")))
                status, answer = 200, {"url": self.carehub.url, "key_id": self.carehub.key_id}
            reply = Reply(status, orjson.dumps(answer), {"content-type": "application/json"})
        elif path.startswith("/_sim/"):
            status, answer = self.sim.handle_admin(request.method, path, request.query, request.body)
            reply = Reply(status, orjson.dumps(answer), {"content-type": "application/json"})
        elif path == FHIR_BASE_PATH or path.startswith(FHIR_BASE_PATH + "/"):
            reply = self.sim.handle(request.method, path, request.query, request.headers, request.body)
        else:
            reply = _outcome(404, "not-found", f"no route {path} (the FHIR base is {FHIR_BASE_PATH})")
        if reply.hang:
            await hang(receive, self.hang_seconds)
            return
        await self._answer(send, reply)

    @staticmethod
    async def _answer(send: Send, reply: Reply) -> None:
        headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in reply.headers.items()]
        await respond(send, reply.status, reply.body, headers)


@dataclasses.dataclass(frozen=True)
class HisHandle:
    """A running simulator: ``base_url`` is the FHIR base (``http://127.0.0.1:PORT/fhir``),
    ``admin_url`` the root the ``/_sim/`` admin API hangs off, ``token`` the bearer token."""

    base_url: str
    token: str
    admin_url: str


async def serve_his(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str = DEFAULT_TOKEN,
    hang_seconds: float = 120.0,
    clock: Callable[[], dt.datetime] = _now,
    carehub_url: str = "",
    partner_key: str = "",
    partner_secret: str = "",
    task_status: trio.TaskStatus[HisHandle] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the simulator until cancelled; ``task_status.started`` gets a :class:`HisHandle`.

    ``hang_seconds`` bounds how long a ``timeout`` fault keeps a request open if the client stays.
    """
    sim = HisSimulator(token=token, clock=clock)
    async with trio.open_nursery() as nursery:
        app = HisApp(sim, hang_seconds=hang_seconds, carehub=CareHubTarget(carehub_url, partner_key, partner_secret))
        root = await serve_app(nursery, app, host, port,
                               logging.getLogger("hypercorn.error"))
        handle = HisHandle(base_url=root + FHIR_BASE_PATH, token=token, admin_url=root)
        log.info("HIS FHIR simulator at %s", handle.base_url)
        task_status.started(handle)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m carehub.bots.his_sim", description="HIS simulator: an HL7 FHIR R4 server for Appointment"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8092)
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="the bearer token clients must present")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def start(nursery: trio.Nursery) -> None:
        handle = await nursery.start(functools.partial(serve_his, host=args.host, port=args.port, token=args.token))
        print(f"HIS FHIR simulator: base {handle.base_url}, admin {handle.admin_url}/_sim/", flush=True)

    run_until_signalled(start)


if __name__ == "__main__":
    main()
