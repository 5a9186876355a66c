"""Care relationships: who may read whose medical data, and when.

A doctor reads a patient's data only while a consultation, appointment or follow-up links
them (the domain actors call :meth:`CareAccess.link`), or after a break-glass: the doctor gives
a reason, gets one hour, and the access is audited and raised to ops. Every read, allowed or
denied, is in the audit trail.
"""

from __future__ import annotations

import datetime as dt

from carehub.storage.audit import AuditEntry, AuditLog, Outcome
from carehub.storage.identity.care import CareLinkStore

KINDS = ("consultation", "appointment", "follow_up", "break_glass")
BREAK_GLASS = dt.timedelta(hours=1)


class CareAccess:
    def __init__(self, links: CareLinkStore, audit: AuditLog) -> None:
        self.links = links
        self.audit = audit

    async def link(
        self, doctor_id: str, patient_id: str, kind: str, ref: str, *, until: dt.datetime,
        reason: str | None = None, now: dt.datetime | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        now = now or dt.datetime.now(dt.UTC)
        await self.links.put(doctor_id, patient_id, kind, ref, starts_at=now, ends_at=until, reason=reason)

    async def linked(self, doctor_id: str, patient_id: str, now: dt.datetime | None = None) -> bool:
        return await self.links.open_at(doctor_id, patient_id, now or dt.datetime.now(dt.UTC))

    async def check_read(self, doctor_id: str, roles: list[str], patient_id: str, what: str, ip: str | None) -> bool:
        """Whether the doctor may read ``what`` of the patient now; audited either way."""
        allowed = await self.linked(doctor_id, patient_id)
        await self.audit.append(
            AuditEntry(action="record.read", target=f"patient/{patient_id}/{what}", actor_id=doctor_id,
                       actor_roles=roles, source_ip=ip, outcome=Outcome.OK if allowed else Outcome.DENIED)
        )
        return allowed

    async def break_glass(
        self, doctor_id: str, roles: list[str], patient_id: str, reason: str, ip: str | None
    ) -> dt.datetime:
        now = dt.datetime.now(dt.UTC)
        until = now + BREAK_GLASS
        await self.link(doctor_id, patient_id, "break_glass", now.isoformat(), until=until, reason=reason, now=now)
        await self.audit.append(
            AuditEntry(action="record.break_glass", target=f"patient/{patient_id}", actor_id=doctor_id,
                       actor_roles=roles, source_ip=ip, detail={"reason": reason, "until": until.isoformat()})
        )
        return until
