"""People who receive care ("就诊人"), their links to accounts, and real-name verifications."""

from __future__ import annotations

import dataclasses
import datetime as dt

import asyncpg

from ..db import Database


@dataclasses.dataclass(frozen=True, slots=True)
class PatientRow:
    id: str
    name_enc: str
    id_number_enc: str
    id_number_idx: str
    sex: str
    verified_at: dt.datetime | None
    verified_by: str | None
    row_tag: str


@dataclasses.dataclass(frozen=True, slots=True)
class LinkRow:
    patient: PatientRow
    account_id: str
    relation: str
    is_default: bool
    guardian_consent: bool
    consent_status: str


@dataclasses.dataclass(frozen=True, slots=True)
class VerificationRow:
    id: str
    patient_id: str
    account_id: str
    method: str
    status: str
    biz_token: str | None
    photo_type: str | None
    reason: str | None
    created_at: dt.datetime


_P = "p.id, p.name_enc, p.id_number_enc, p.id_number_idx, p.sex, p.verified_at, p.verified_by, p.row_tag"


def _patient(r: asyncpg.Record) -> PatientRow:
    return PatientRow(
        r["id"], r["name_enc"], r["id_number_enc"], r["id_number_idx"], r["sex"], r["verified_at"],
        r["verified_by"], r["row_tag"],
    )


def _link(r: asyncpg.Record) -> LinkRow:
    return LinkRow(
        _patient(r), r["account_id"], r["relation"], r["is_default"], r["guardian_consent"], r["consent_status"]
    )


def _verification(r: asyncpg.Record) -> VerificationRow:
    return VerificationRow(
        r["id"], r["patient_id"], r["account_id"], r["method"], r["status"], r["biz_token"], r["photo_type"],
        r["reason"], r["created_at"],
    )


_LINK = (
    f"SELECT {_P}, ap.account_id, ap.relation, ap.is_default, ap.guardian_consent, ap.consent_status"
    " FROM account_patients ap JOIN patients p ON p.id = ap.patient_id"
)


class PatientStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def links_of(self, account_id: str) -> list[LinkRow]:
        rows = await self.db.fetch(_LINK + " WHERE ap.account_id = $1 ORDER BY ap.created_at", account_id)
        return [_link(r) for r in rows]

    async def link(self, account_id: str, patient_id: str) -> LinkRow | None:
        r = await self.db.fetchrow(_LINK + " WHERE ap.account_id = $1 AND ap.patient_id = $2", account_id, patient_id)
        return None if r is None else _link(r)

    async def links_to(self, patient_id: str) -> list[LinkRow]:
        rows = await self.db.fetch(_LINK + " WHERE ap.patient_id = $1 ORDER BY ap.created_at", patient_id)
        return [_link(r) for r in rows]

    async def by_id_index(self, id_number_idx: str) -> PatientRow | None:
        r = await self.db.fetchrow(f"SELECT {_P} FROM patients p WHERE p.id_number_idx = $1", id_number_idx)
        return None if r is None else _patient(r)

    async def add_link(
        self,
        account_id: str,
        patient: PatientRow,
        *,
        new_patient: bool,
        relation: str,
        guardian_consent: bool,
        consent_status: str,
        limit: int,
        now: dt.datetime,
    ) -> bool:
        """Insert the person (if new) and the link, unless the account already has ``limit`` links.

        Returns False when the limit is reached. The account's row is locked first, so two
        concurrent adds cannot both squeeze in as the fifth.
        """

        async def op(conn: asyncpg.Connection) -> bool:
            async with conn.transaction():
                await conn.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", account_id)
                count = await conn.fetchval("SELECT count(*) FROM account_patients WHERE account_id = $1", account_id)
                if count >= limit:
                    return False
                if new_patient:
                    await conn.execute(
                        "INSERT INTO patients (id, name_enc, id_number_enc, id_number_idx, sex, verified_at,"
                        " verified_by, created_at, row_tag) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                        patient.id, patient.name_enc, patient.id_number_enc, patient.id_number_idx, patient.sex,
                        patient.verified_at, patient.verified_by, now, patient.row_tag,
                    )
                await conn.execute(
                    "INSERT INTO account_patients (account_id, patient_id, relation, is_default, guardian_consent,"
                    " consent_status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    account_id, patient.id, relation, count == 0, guardian_consent, consent_status, now,
                )
                return True

        return await self.db.run(op)

    async def remove_link(self, account_id: str, patient_id: str) -> bool:
        async def op(conn: asyncpg.Connection) -> bool:
            async with conn.transaction():
                row = await conn.fetchrow(
                    "DELETE FROM account_patients WHERE account_id = $1 AND patient_id = $2 RETURNING is_default",
                    account_id, patient_id,
                )
                if row is None:
                    return False
                if row["is_default"]:
                    # the oldest remaining link becomes the default
                    first = await conn.fetchval(
                        "SELECT patient_id FROM account_patients WHERE account_id = $1 ORDER BY created_at LIMIT 1",
                        account_id,
                    )
                    if first is not None:
                        await conn.execute(
                            "UPDATE account_patients SET is_default = true WHERE account_id = $1 AND patient_id = $2",
                            account_id, first,
                        )
                return True

        return await self.db.run(op)

    async def set_default(self, account_id: str, patient_id: str) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.execute("UPDATE account_patients SET is_default = false WHERE account_id = $1", account_id)
                await conn.execute(
                    "UPDATE account_patients SET is_default = true WHERE account_id = $1 AND patient_id = $2",
                    account_id, patient_id,
                )

        await self.db.run(op)

    async def set_consent(self, account_id: str, patient_id: str, status: str) -> None:
        await self.db.execute(
            "UPDATE account_patients SET consent_status = $3 WHERE account_id = $1 AND patient_id = $2",
            account_id, patient_id, status,
        )

    async def update_relation(self, account_id: str, patient_id: str, relation: str) -> None:
        await self.db.execute(
            "UPDATE account_patients SET relation = $3 WHERE account_id = $1 AND patient_id = $2",
            account_id, patient_id, relation,
        )

    async def mark_verified(self, patient_id: str, method: str, at: dt.datetime, row_tag: str) -> None:
        await self.db.execute(
            "UPDATE patients SET verified_at = $2, verified_by = $3, row_tag = $4 WHERE id = $1",
            patient_id, at, method, row_tag,
        )

    # ---- verifications ------------------------------------------------------------------------------

    async def add_verification(
        self, vid: str, patient_id: str, account_id: str, method: str, status: str, *, biz_token: str | None = None,
        photo_enc: str | None = None, photo_type: str | None = None, now: dt.datetime,
    ) -> None:
        await self.db.execute(
            "INSERT INTO verifications (id, patient_id, account_id, method, status, biz_token, photo_enc, photo_type,"
            " created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            vid, patient_id, account_id, method, status, biz_token, photo_enc, photo_type, now,
        )

    async def latest_verification(self, patient_id: str, method: str) -> VerificationRow | None:
        r = await self.db.fetchrow(
            "SELECT * FROM verifications WHERE patient_id = $1 AND method = $2 ORDER BY created_at DESC LIMIT 1",
            patient_id, method,
        )
        return None if r is None else _verification(r)

    async def verification(self, vid: str) -> VerificationRow | None:
        r = await self.db.fetchrow("SELECT * FROM verifications WHERE id = $1", vid)
        return None if r is None else _verification(r)

    async def decide(self, vid: str, status: str, reason: str | None, by: str | None, now: dt.datetime) -> bool:
        status_text = await self.db.execute(
            "UPDATE verifications SET status = $2, reason = $3, decided_by = $4, decided_at = $5"
            " WHERE id = $1 AND status IN ('pending', 'review')",
            vid, status, reason, by, now,
        )
        return status_text == "UPDATE 1"

    async def reviews(self, limit: int = 100) -> list[VerificationRow]:
        rows = await self.db.fetch(
            "SELECT * FROM verifications WHERE status = 'review' ORDER BY created_at LIMIT $1", limit
        )
        return [_verification(r) for r in rows]

    async def patient(self, patient_id: str) -> PatientRow | None:
        r = await self.db.fetchrow(f"SELECT {_P} FROM patients p WHERE p.id = $1", patient_id)
        return None if r is None else _patient(r)
