"""Doctors' directory entries: expert profiles (PUB-4, ADM-3). Doctors' names are public."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from carehub.errors import Invalid, NotFound

from ._base import DirectoryRepository, Editor, summary

#: a doctor as the directory shows them (the name is the account's display name: doctors' names are public)
DOCTOR_COLUMNS = (
    "a.id, a.display_name AS name, d.department_id, dep.name AS department, d.title, d.specialty, d.intro,"
    " d.photo_url, d.expert, d.disabled OR a.disabled AS disabled"
)
DOCTOR_FROM = " FROM doctors d JOIN accounts a ON a.id = d.account_id JOIN departments dep ON dep.id = d.department_id"


class DoctorStore(DirectoryRepository):
    """Doctors in the directory: read, add (with their new accounts), change."""

    async def doctors(
        self, *, department: str | None = None, expert_only: bool = False, include_disabled: bool = False
    ) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            f"SELECT {DOCTOR_COLUMNS}{DOCTOR_FROM}"
            " WHERE ($1 OR NOT (d.disabled OR a.disabled)) AND ($2::varchar IS NULL OR d.department_id = $2)"
            " AND (NOT $3 OR d.expert) ORDER BY a.id",
            include_disabled, department, expert_only,
        )
        return [dict(r) for r in rows]

    async def doctor(self, doctor_id: str) -> dict[str, Any]:
        row = await self.db.fetchrow(
            f"SELECT {DOCTOR_COLUMNS}{DOCTOR_FROM} WHERE a.id = $1 AND NOT d.disabled AND NOT a.disabled", doctor_id
        )
        if row is None:
            raise NotFound(f"医生 {doctor_id} 不存在 (no doctor {doctor_id})")
        return dict(row)

    async def add_doctors(self, editor: Editor, doctors: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        """Directory entries for new doctor accounts: ``(account_id, fields)``, all or none."""

        async def op(conn: asyncpg.Connection) -> None:
            await conn.executemany(
                "INSERT INTO doctors (account_id, department_id, title, specialty, intro, photo_url, expert, disabled)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, false)",
                [
                    (account_id, d["department_id"], d["title"], d["specialty"], d.get("intro", ""),
                     d.get("photo_url", ""), d.get("expert", False))
                    for account_id, d in doctors
                ],
            )

        ids = [account_id for account_id, _ in doctors]
        action, target = ("doctor.create", f"doctor/{ids[0]}") if len(ids) == 1 else ("doctor.import", "doctor")
        await self._change(editor, action, target, {"doctors": ",".join(ids)}, op)

    async def change_doctor(self, editor: Editor, doctor_id: str, changes: Mapping[str, Any]) -> None:
        """Change some fields (department_id, title, specialty, intro, photo_url, expert, disabled)."""
        columns = {"department_id", "title", "specialty", "intro", "photo_url", "expert", "disabled"}
        assert set(changes) <= columns, set(changes) - columns

        async def op(conn: asyncpg.Connection) -> None:
            if not await conn.fetchval("SELECT 1 FROM doctors WHERE account_id = $1 FOR UPDATE", doctor_id):
                raise NotFound(f"医生 {doctor_id} 不存在 (no doctor {doctor_id})")
            department = changes.get("department_id")
            if department is not None and not await conn.fetchval(
                "SELECT 1 FROM departments WHERE id = $1 AND NOT disabled", department
            ):
                raise Invalid(f"科室 {department} 不存在或已停用 (no open department {department})")
            if changes:
                names = sorted(changes)
                sets = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))
                await conn.execute(
                    f"UPDATE doctors SET {sets} WHERE account_id = $1", doctor_id, *(changes[n] for n in names)
                )

        await self._change(editor, "doctor.change", f"doctor/{doctor_id}", summary(changes), op)
