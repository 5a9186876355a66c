"""Doctors: a patient's data within a care relationship."""

from __future__ import annotations

from typing import Any

import msgspec

from carehub.hub import Hub
from carehub.identity.care import CareAccess
from carehub.identity.patients import Patients

from ..errors import ApiError
from ..routing import RequestContext, RouteDecorator
from .args import client_ip


class BreakGlass(msgspec.Struct, forbid_unknown_fields=True):
    reason: str


def register(r: RouteDecorator, *, care: CareAccess, patients: Patients, hub: Hub) -> None:
    @r("GET", "/api/v1/doctor/patients/<patient_id>", summary="A patient's profile (needs a care relationship)",
       permission="patient.read", tag="doctor")
    async def doctor_patient(ctx: RequestContext, patient_id: str) -> Any:
        assert ctx.principal is not None
        roles = sorted(ctx.principal.roles)
        if not await care.check_read(ctx.principal.account_id, roles, patient_id, "profile", client_ip()):
            # 404, not 403: a doctor outside the care relationship does not learn the patient exists
            raise ApiError(404, "not_in_your_care", "您名下没有这位患者 (no patient of yours with this id)")
        return await patients.profile_for_care(patient_id)

    @r("POST", "/api/v1/doctor/patients/<patient_id>/break-glass",
       summary="Emergency access for one hour, with a reason (audited, ops alerted)",
       permission="patient.read", body=BreakGlass, tag="doctor")
    async def break_glass(ctx: RequestContext, body: BreakGlass, patient_id: str) -> Any:
        assert ctx.principal is not None
        if len(body.reason.strip()) < 10:
            message = "请说明紧急调阅的理由（至少10个字）(give a reason of at least 10 characters)"
            raise ApiError(422, "invalid", message)
        await patients.profile_for_care(patient_id)  # 404 for unknown patients
        until = await care.break_glass(
            ctx.principal.account_id, sorted(ctx.principal.roles), patient_id, body.reason.strip(), client_ip()
        )
        alarm = f"break-glass: {ctx.principal.login} opened patient {patient_id}: {body.reason}"
        hub.alarm("warning", alarm)
        return {"until": until.isoformat()}
