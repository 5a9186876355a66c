"""Real-name verification (ME-1) and family members, "就诊人" (ME-2).

Rules, as the internet-hospital regulations and the tender ask:

- An account has at most :data:`MAX_PATIENTS` people linked to it, itself included
  (relation ``self``); a sixth is refused with a clear message.
- A person is identified by name + resident ID number (GB 11643 checked); the number is stored
  sealed with a blind index, so the same person is found again without decrypting anything.
- A child under 14 can only be added with the guardian's consent flag.
- A person already linked to another account is linked again only with that person's consent:
  the new link waits (``consent_status = pending``) until the account holding the person as
  ``self`` (or, for a person without an own account, the first account that added them) agrees.
- Each person is verified like the account holder: a face check through the verification
  provider, or an ID photo reviewed by an admin. An account counts as verified when its
  ``self`` person is; only then may it consult, book or pay.
- Every row read is checked against its HMAC-SM3 integrity tag; a row changed behind CareHub's
  back is reported (:class:`carehub.storage.keyring.IntegrityError`), never served.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import time
import uuid
from typing import Any

from carehub.channels.faceid import FaceIdChannel, FaceIdError
from carehub.storage.audit import AuditEntry, AuditLog, Outcome
from carehub.storage.identity.patients import LinkRow, PatientRow, PatientStore
from carehub.storage.keyring import KeyRing

from .errors import PatientNotFound, PatientRefused, VerificationUnavailable
from .idcard import parse_id_number
from .masking import mask_id_number, mask_name

MAX_PATIENTS = 5
RELATIONS = ("self", "child", "parent", "spouse", "other")
PHOTO_TYPES = ("image/jpeg", "image/png")
MAX_PHOTO_BYTES = 2 * 1024 * 1024
GUARDIAN_AGE = 14
#: How long "this account may book for this person" is remembered after it was read (listing
#: the family members, or a booking). Only a yes is remembered, and removing the person from
#: the account forgets it at once on this node; the time bounds what another node may miss.
BOOKABLE_SECONDS = 60.0


def _sniff(data: bytes) -> str | None:
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    return None


class Patients:
    def __init__(self, store: PatientStore, keyring: KeyRing, audit: AuditLog, face: FaceIdChannel | None) -> None:
        self.store = store
        self.keyring = keyring
        self.audit = audit
        self.face = face
        #: (account, patient) -> (until, masked name): may book, remembered (BOOKABLE_SECONDS)
        self._bookable: dict[tuple[str, str], tuple[float, str]] = {}

    # ---- reading ----------------------------------------------------------------------------------

    def _fields(self, p: PatientRow) -> dict[str, str | None]:
        return {
            "name_enc": p.name_enc, "id_number_enc": p.id_number_enc, "id_number_idx": p.id_number_idx,
            "sex": p.sex, "verified_by": p.verified_by,
        }

    def _checked(self, p: PatientRow) -> PatientRow:
        self.keyring.check_integrity("patients", p.id, self._fields(p), p.row_tag)
        return p

    def view(self, link: LinkRow) -> dict[str, Any]:
        """What the app shows: masked name and ID number, never the full values.

        Until the person consents to a link, the account learns nothing of the person from it: not
        whether they are verified (``verified`` is false, as for a person added new); the sex comes
        from the ID number the account typed itself.
        """
        p = self._checked(link.patient)
        granted = link.consent_status == "granted"
        return {
            "id": p.id,
            "name": mask_name(self.keyring.open(p.name_enc, field="patients.name")),
            "id_number": mask_id_number(self.keyring.open(p.id_number_enc, field="patients.id_number")),
            "sex": p.sex,
            "relation": link.relation,
            "is_default": link.is_default,
            "verified": granted and p.verified_at is not None,
            "consent": link.consent_status,
        }

    async def profile_for_care(self, patient_id: str) -> dict[str, Any]:
        """What a treating doctor sees: full name, sex, age; the ID number stays masked."""
        p = await self.store.patient(patient_id)
        if p is None:
            raise PatientNotFound()
        self._checked(p)
        number = self.keyring.open(p.id_number_enc, field="patients.id_number")
        return {
            "id": p.id,
            "name": self.keyring.open(p.name_enc, field="patients.name"),
            "sex": p.sex,
            "age": parse_id_number(number).age_on(dt.date.today()),
            "id_number": mask_id_number(number),
            "verified": p.verified_at is not None,
        }

    async def for_booking(self, account_id: str, patient_id: str) -> str:
        """Check ``account_id`` may book and pay for ``patient_id`` (linked, consented, real-name
        verified: OUT-2, ME-1); returns the masked name shown on queue screens."""
        known = self._bookable.get((account_id, patient_id))
        if known is not None and known[0] > time.monotonic():
            return known[1]
        link = await self._own_link(account_id, patient_id)
        if link.consent_status != "granted":
            raise PatientRefused("该就诊人尚未同意关联 (waiting for the person's consent)", code="consent_pending")
        if link.patient.verified_at is None:
            raise PatientRefused("该就诊人尚未完成实名认证, 不能预约或支付 (real-name verification required)",
                                 code="verification_required")
        return self._remember_bookable(link, mask_name(self.keyring.open(link.patient.name_enc, field="patients.name")))

    def _remember_bookable(self, link: LinkRow, label: str) -> str:
        if len(self._bookable) > 200_000:
            self._bookable.clear()
        self._bookable[(link.account_id, link.patient.id)] = (time.monotonic() + BOOKABLE_SECONDS, label)
        return label

    async def insurance_identity(self, patient_id: str, *, actor_id: str | None = None) -> tuple[str, str]:
        """Full name and ID number for a medical-insurance payment (the gateway encrypts them
        again with its own key); every use is audited."""
        p = await self.store.patient(patient_id)
        if p is None:
            raise PatientNotFound()
        self._checked(p)
        await self._audit("patient.identity_used", actor_id or "system", patient_id, None, {"purpose": "insurance"})
        return (self.keyring.open(p.name_enc, field="patients.name"),
                self.keyring.open(p.id_number_enc, field="patients.id_number"))

    async def list_for(self, account_id: str) -> list[dict[str, Any]]:
        links = await self.store.links_of(account_id)
        views = [self.view(link) for link in links]  # checks each row's integrity tag
        for link, view in zip(links, views, strict=True):  # the app lists them before booking: remember
            if link.consent_status == "granted" and link.patient.verified_at is not None:
                self._remember_bookable(link, view["name"])  # the masked name, as for_booking gives
        return views

    async def _own_link(self, account_id: str, patient_id: str) -> LinkRow:
        link = await self.store.link(account_id, patient_id)
        if link is None:
            raise PatientNotFound()
        self._checked(link.patient)
        return link

    # ---- changing ---------------------------------------------------------------------------------

    async def add(
        self, account_id: str, name: str, id_number: str, relation: str, *, guardian_consent: bool = False,
        verified_by: str | None = None, ip: str | None = None,
    ) -> dict[str, Any]:
        name = name.strip()
        if not 2 <= len(name) <= 50:
            raise PatientRefused("姓名应为 2-50 个字 (name: 2-50 characters)", code="invalid")
        if relation not in RELATIONS:
            raise PatientRefused(f"relation must be one of {', '.join(RELATIONS)}", code="invalid")
        resident = parse_id_number(id_number)  # InvalidIdNumber says what is wrong
        if resident.age_on(dt.date.today()) < GUARDIAN_AGE and not guardian_consent:
            raise PatientRefused(
                "未满14周岁的就诊人需监护人同意 (a child under 14 needs the guardian's consent)",
                code="guardian_consent_required",
            )
        links = await self.store.links_of(account_id)
        if relation == "self" and any(link.relation == "self" for link in links):
            raise PatientRefused("本人已添加 (this account already has its own person)", code="duplicate")
        index = self.keyring.blind_index(resident.number, field="patients.id_number")
        existing = await self.store.by_id_index(index)
        now = dt.datetime.now(dt.UTC)
        if existing is not None:
            self._checked(existing)
            if any(link.patient.id == existing.id for link in links):
                raise PatientRefused("该就诊人已在您的列表中 (already on this account)", code="duplicate")
            if self.keyring.open(existing.name_enc, field="patients.name") != name:
                raise PatientRefused("姓名与身份证号不符 (name does not match the ID number)", code="mismatch")
            patient, new, consent = existing, False, "pending"
        else:
            pid = uuid.uuid4().hex
            name_enc = self.keyring.seal(name, field="patients.name")
            id_enc = self.keyring.seal(resident.number, field="patients.id_number")
            patient = PatientRow(
                pid, name_enc, id_enc, index, resident.sex.label, now if verified_by else None, verified_by, ""
            )
            patient = dataclasses.replace(
                patient, row_tag=self.keyring.integrity_tag("patients", pid, self._fields(patient))
            )
            new, consent = True, "granted"
        if not await self.store.add_link(
            account_id, patient, new_patient=new, relation=relation, guardian_consent=guardian_consent,
            consent_status=consent, limit=MAX_PATIENTS, now=now,
        ):
            raise PatientRefused(
                f"每个账号最多添加 {MAX_PATIENTS} 位就诊人 (at most {MAX_PATIENTS} people per account)",
                code="family_limit",
            )
        await self._audit("patient.add", account_id, patient.id, ip, {"relation": relation, "consent": consent})
        link = await self.store.link(account_id, patient.id)
        assert link is not None
        return self.view(link)

    async def remove(self, account_id: str, patient_id: str, *, ip: str | None = None) -> None:
        self._bookable.pop((account_id, patient_id), None)
        if not await self.store.remove_link(account_id, patient_id):
            raise PatientNotFound()
        await self._audit("patient.remove", account_id, patient_id, ip, {})

    async def set_default(self, account_id: str, patient_id: str) -> None:
        link = await self._own_link(account_id, patient_id)
        if link.consent_status != "granted":
            raise PatientRefused("该就诊人尚未同意关联 (waiting for the person's consent)", code="consent_pending")
        await self.store.set_default(account_id, patient_id)

    async def set_relation(self, account_id: str, patient_id: str, relation: str) -> None:
        if relation not in RELATIONS or relation == "self":
            raise PatientRefused("relation must be child, parent, spouse or other", code="invalid")
        await self._own_link(account_id, patient_id)
        await self.store.update_relation(account_id, patient_id, relation)

    async def answer_consent(
        self, owner_id: str, patient_id: str, requester_id: str, grant: bool, *, ip: str | None = None
    ) -> None:
        """The person (through their own account) lets another account link them, or not."""
        links = await self.store.links_to(patient_id)
        holder = next((link for link in links if link.relation == "self"), None) or (links[0] if links else None)
        if holder is None or holder.account_id != owner_id:
            raise PatientNotFound()
        request = next((link for link in links if link.account_id == requester_id), None)
        if request is None or request.consent_status != "pending":
            raise PatientRefused("没有待处理的关联请求 (no pending request)", code="not_found")
        await self.store.set_consent(requester_id, patient_id, "granted" if grant else "refused")
        await self._audit("patient.consent", owner_id, patient_id, ip, {"requester": requester_id, "grant": str(grant)})

    async def pending_consents(self, owner_id: str) -> list[dict[str, str]]:
        """Requests from other accounts to link people this account holds."""
        out = []
        for link in await self.store.links_of(owner_id):
            if link.relation != "self" and link.consent_status != "granted":
                continue
            for other in await self.store.links_to(link.patient.id):
                if other.account_id != owner_id and other.consent_status == "pending":
                    out.append({"patient_id": link.patient.id, "requester": other.account_id})
        return out

    # ---- verification -----------------------------------------------------------------------------

    async def start_face(self, account_id: str, patient_id: str) -> dict[str, str]:
        link = await self._own_link(account_id, patient_id)
        if self.face is None:
            raise VerificationUnavailable("人脸核身服务未配置，请上传身份证照片人工审核 (face check not configured)")
        p = link.patient
        name = self.keyring.open(p.name_enc, field="patients.name")
        number = self.keyring.open(p.id_number_enc, field="patients.id_number")
        try:
            session = await self.face.start(name, number, extra=patient_id)
        except FaceIdError as err:
            raise VerificationUnavailable(f"人脸核身暂不可用: {err}") from None
        await self.store.add_verification(
            uuid.uuid4().hex, patient_id, account_id, "face", "pending", biz_token=session.biz_token,
            now=dt.datetime.now(dt.UTC),
        )
        return {"url": session.url}

    async def finish_face(self, account_id: str, patient_id: str, *, ip: str | None = None) -> dict[str, Any]:
        link = await self._own_link(account_id, patient_id)
        attempt = await self.store.latest_verification(patient_id, "face")
        if attempt is None or attempt.account_id != account_id or attempt.biz_token is None:
            raise PatientRefused("请先发起人脸核身 (start a face check first)", code="not_started")
        if self.face is None:
            raise VerificationUnavailable("人脸核身服务未配置")
        if attempt.status != "pending":
            return {"status": attempt.status, "reason": attempt.reason}
        try:
            result = await self.face.result(attempt.biz_token)
        except FaceIdError as err:
            raise VerificationUnavailable(f"人脸核身暂不可用: {err}") from None
        if result.pending:
            return {"status": "pending", "reason": result.reason}
        p = link.patient
        same_person = (
            result.id_number in (None, self.keyring.open(p.id_number_enc, field="patients.id_number"))
        )
        passed = result.passed and same_person
        now = dt.datetime.now(dt.UTC)
        await self.store.decide(attempt.id, "passed" if passed else "failed", result.reason, None, now)
        if passed:
            await self._verify(p, "face", now)
        await self._audit("patient.verify", account_id, patient_id, ip, {"method": "face", "passed": str(passed)})
        return {"status": "passed" if passed else "failed", "reason": result.reason}

    async def upload_photo(
        self, account_id: str, patient_id: str, data: bytes, content_type: str, *, ip: str | None = None
    ) -> dict[str, str]:
        await self._own_link(account_id, patient_id)
        if len(data) > MAX_PHOTO_BYTES:
            raise PatientRefused("照片不能超过 2 MB (photo larger than 2 MB)", code="too_large")
        kind = _sniff(data)
        if content_type.split(";")[0].strip() not in PHOTO_TYPES or kind is None or kind != content_type.split(";")[0]:
            raise PatientRefused(
                "只接受 JPEG 或 PNG 身份证照片 (JPEG or PNG, and the file must really be one)",
                code="unsupported_type",
            )
        vid = uuid.uuid4().hex
        sealed = self.keyring.seal(base64.b64encode(data).decode(), field="verifications.photo")
        await self.store.add_verification(
            vid, patient_id, account_id, "photo", "review", photo_enc=sealed, photo_type=kind,
            now=dt.datetime.now(dt.UTC),
        )
        await self._audit("patient.photo_upload", account_id, patient_id, ip, {"verification": vid})
        return {"verification": vid, "status": "review"}

    async def reviews(self) -> list[dict[str, Any]]:
        out = []
        for v in await self.store.reviews():
            p = await self.store.patient(v.patient_id)
            if p is None:
                continue
            self._checked(p)
            out.append({
                "verification": v.id,
                "patient_id": v.patient_id,
                "name": mask_name(self.keyring.open(p.name_enc, field="patients.name")),
                "id_number": mask_id_number(self.keyring.open(p.id_number_enc, field="patients.id_number")),
                "submitted_at": v.created_at.isoformat(),
            })
        return out

    async def decide(
        self, vid: str, approve: bool, reason: str | None, admin_id: str, *, ip: str | None = None
    ) -> None:
        v = await self.store.verification(vid)
        if v is None or v.method != "photo":
            raise PatientRefused("没有这个审核 (no such review)", code="not_found")
        now = dt.datetime.now(dt.UTC)
        if not await self.store.decide(vid, "passed" if approve else "failed", reason, admin_id, now):
            raise PatientRefused("该审核已处理 (already decided)", code="already_decided")
        if approve:
            p = await self.store.patient(v.patient_id)
            assert p is not None
            await self._verify(self._checked(p), "photo", now)
        await self._audit("patient.review", admin_id, v.patient_id, ip, {"approve": str(approve)})

    async def _verify(self, p: PatientRow, method: str, now: dt.datetime) -> None:
        verified = dataclasses.replace(p, verified_at=now, verified_by=method)
        tag = self.keyring.integrity_tag("patients", p.id, self._fields(verified))
        await self.store.mark_verified(p.id, method, now, tag)

    async def _audit(self, action: str, actor: str, patient_id: str, ip: str | None, detail: dict[str, str]) -> None:
        await self.audit.append(
            AuditEntry(action=action, target=f"patient/{patient_id}", outcome=Outcome.OK, actor_id=actor,
                       source_ip=ip, detail=detail)
        )
