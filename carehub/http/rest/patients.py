"""Patients: family members (就诊人), real-name verification, consent; admins' photo review."""

from __future__ import annotations

from typing import Any

import msgspec
from quart import request

from carehub.identity import Identity
from carehub.identity.patients import Patients

from ..errors import ApiError
from ..routing import RequestContext, RouteDecorator, json_response
from .args import client_ip


class AddPatient(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    id_number: str
    relation: str
    guardian_consent: bool = False


class PatientUpdate(msgspec.Struct, forbid_unknown_fields=True):
    relation: str


class ConsentAnswer(msgspec.Struct, forbid_unknown_fields=True):
    patient_id: str
    requester: str
    grant: bool


class ReviewDecision(msgspec.Struct, forbid_unknown_fields=True):
    approve: bool
    reason: str | None = None


class PatientView(msgspec.Struct):
    """A family member as the app shows them: name and ID number masked."""

    id: str
    name: str
    id_number: str
    sex: str
    #: self, child, parent, spouse or other
    relation: str
    is_default: bool
    #: real-name verified (ME-1)
    verified: bool
    #: granted, or pending while the person has not agreed to be linked
    consent: str


class PatientsView(msgspec.Struct):
    patients: list[PatientView]


class FaceStartView(msgspec.Struct):
    #: the verification provider's page to open (it comes back to the app's return page)
    url: str


class FaceResultView(msgspec.Struct):
    #: pending, passed or failed
    status: str
    reason: str | None


class PatientChangedView(msgspec.Struct):
    updated: str | None = None
    removed: str | None = None
    default: str | None = None


def register(r: RouteDecorator, *, patients: Patients, identity: Identity) -> None:
    @r("GET", "/api/v1/me/patients", summary="My family members (就诊人), masked", permission="account.self",
       tag="patients", command="patients.list", response=PatientsView)
    async def my_patients(ctx: RequestContext) -> Any:
        assert ctx.principal is not None
        return {"patients": await patients.list_for(ctx.principal.account_id)}

    @r("POST", "/api/v1/me/patients", summary="Add myself or a family member (at most 5)",
       permission="account.self", body=AddPatient, tag="patients", response=PatientView, status=201)
    async def add_patient(ctx: RequestContext, body: AddPatient) -> Any:
        assert ctx.principal is not None
        view = await patients.add(
            ctx.principal.account_id, body.name, body.id_number, body.relation,
            guardian_consent=body.guardian_consent, ip=client_ip(),
        )
        return json_response(view, 201)

    @r("PATCH", "/api/v1/me/patients/<patient_id>", summary="Change how a family member is related to me",
       permission="account.self", body=PatientUpdate, tag="patients", response=PatientChangedView)
    async def update_patient(ctx: RequestContext, body: PatientUpdate, patient_id: str) -> Any:
        assert ctx.principal is not None
        await patients.set_relation(ctx.principal.account_id, patient_id, body.relation)
        return {"updated": patient_id}

    @r("DELETE", "/api/v1/me/patients/<patient_id>", summary="Remove a family member from my account",
       permission="account.self", tag="patients", response=PatientChangedView)
    async def remove_patient(ctx: RequestContext, patient_id: str) -> Any:
        assert ctx.principal is not None
        await patients.remove(ctx.principal.account_id, patient_id, ip=client_ip())
        return {"removed": patient_id}

    @r("POST", "/api/v1/me/patients/<patient_id>/default", summary="Make a family member my default",
       permission="account.self", tag="patients", response=PatientChangedView)
    async def default_patient(ctx: RequestContext, patient_id: str) -> Any:
        assert ctx.principal is not None
        await patients.set_default(ctx.principal.account_id, patient_id)
        return {"default": patient_id}

    @r("POST", "/api/v1/me/patients/<patient_id>/face", summary="Start a face check (real-name verification)",
       permission="account.self", tag="patients", response=FaceStartView)
    async def start_face(ctx: RequestContext, patient_id: str) -> Any:
        assert ctx.principal is not None
        return await patients.start_face(ctx.principal.account_id, patient_id)

    @r("POST", "/api/v1/me/patients/<patient_id>/face/result", summary="Read the face check's outcome",
       permission="account.self", tag="patients", response=FaceResultView)
    async def face_result(ctx: RequestContext, patient_id: str) -> Any:
        assert ctx.principal is not None
        outcome = await patients.finish_face(ctx.principal.account_id, patient_id, ip=client_ip())
        identity.forget(ctx.principal.account_id)
        return outcome

    @r("POST", "/api/v1/me/patients/<patient_id>/photo", summary="Upload an ID photo for manual review (JPEG/PNG)",
       permission="account.self", tag="patients", content_type="image/jpeg", status=202)
    async def upload_photo(ctx: RequestContext, patient_id: str) -> Any:
        assert ctx.principal is not None
        length = request.content_length or 0
        if length > 2 * 1024 * 1024:
            raise ApiError(413, "too_large", "照片不能超过 2 MB (photo larger than 2 MB)")
        data = await request.get_data(cache=False, as_text=False)
        assert isinstance(data, bytes)
        result = await patients.upload_photo(
            ctx.principal.account_id, patient_id, data, request.content_type or "", ip=client_ip()
        )
        return json_response(result, 202)

    @r("GET", "/api/v1/me/consents", summary="Requests to link people I hold to other accounts",
       permission="account.self", tag="patients")
    async def my_consents(ctx: RequestContext) -> Any:
        assert ctx.principal is not None
        return {"requests": await patients.pending_consents(ctx.principal.account_id)}

    @r("POST", "/api/v1/me/consents", summary="Agree (or not) that another account links me",
       permission="account.self", body=ConsentAnswer, tag="patients")
    async def answer_consent(ctx: RequestContext, body: ConsentAnswer) -> Any:
        assert ctx.principal is not None
        await patients.answer_consent(
            ctx.principal.account_id, body.patient_id, body.requester, body.grant, ip=client_ip()
        )
        return {"granted": body.grant}

    @r("GET", "/api/v1/admin/verifications", summary="ID photos waiting for manual review",
       permission="admin.verify", tag="admin")
    async def reviews(ctx: RequestContext) -> Any:
        return {"reviews": await patients.reviews()}

    @r("POST", "/api/v1/admin/verifications/<verification_id>/decide", summary="Approve or reject an ID photo",
       permission="admin.verify", body=ReviewDecision, tag="admin")
    async def decide_review(ctx: RequestContext, body: ReviewDecision, verification_id: str) -> Any:
        assert ctx.principal is not None
        await patients.decide(
            verification_id, body.approve, body.reason, ctx.principal.account_id, ip=client_ip()
        )
        return {"decided": verification_id, "approved": body.approve}
