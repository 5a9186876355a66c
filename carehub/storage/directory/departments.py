"""Departments and where they are (PUB-2, ADM-2)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import asyncpg

from carehub.errors import Conflict, Invalid, NotFound

from ._base import DirectoryRepository, Editor, summary
from .doctors import DOCTOR_COLUMNS, DOCTOR_FROM

_DEPARTMENT = (
    "d.id, d.name, d.campus, d.location, d.floor_id, d.room, d.intro, d.phone, d.sort_order, d.disabled,"
    " f.campus_id, f.building, f.name AS floor, f.floor_level AS level"
)


_DEPARTMENT_FROM = " FROM departments d LEFT JOIN floors f ON f.id = d.floor_id"


def location_text(building: str, floor_name: str, room: str) -> str:
    """What older clients show as a department's ``location``: 门诊楼 + 3层 + A区."""
    return f"{building}{floor_name}{room}"


async def place(conn: asyncpg.Connection, floor_id: str | None, room: str) -> tuple[str, str]:
    """The display text (campus, location) of a place: a floor and a room on it."""
    if floor_id is None:
        return "", room
    row = await conn.fetchrow(
        "SELECT c.name AS campus, f.building, f.name FROM floors f JOIN campuses c ON c.id = f.campus_id"
        " WHERE f.id = $1", floor_id,
    )
    if row is None:
        raise Invalid(f"楼层 {floor_id} 不存在 (no floor {floor_id})")
    return row["campus"], location_text(row["building"], row["name"], room)


async def refresh_places(conn: asyncpg.Connection, where: str, *args: Any) -> None:
    """Rewrite the display text of the departments ``where`` selects, after a place changed."""
    for d in await conn.fetch(f"SELECT id, floor_id, room FROM departments WHERE {where}", *args):
        campus, location = await place(conn, d["floor_id"], d["room"])
        await conn.execute("UPDATE departments SET campus = $2, location = $3 WHERE id = $1", d["id"], campus, location)


class DepartmentStore(DirectoryRepository):
    """Departments: read, create, change, disable."""

    async def departments(self, *, include_disabled: bool = False) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            f"SELECT {_DEPARTMENT}{_DEPARTMENT_FROM} WHERE $1 OR NOT d.disabled ORDER BY d.sort_order, d.id",
            include_disabled,
        )
        return [dict(r) for r in rows]

    async def places(self) -> list[dict[str, Any]]:
        """Every department with its campus and location text, disabled ones too, by id (partners read these)."""
        rows = await self.db.fetch("SELECT id, name, campus, location FROM departments ORDER BY id")
        return [dict(row) for row in rows]

    async def department(self, department_id: str) -> dict[str, Any]:
        async def op(conn: asyncpg.Connection) -> dict[str, Any]:
            row = await conn.fetchrow(
                f"SELECT {_DEPARTMENT}{_DEPARTMENT_FROM} WHERE d.id = $1 AND NOT d.disabled", department_id
            )
            if row is None:
                raise NotFound(f"科室 {department_id} 不存在 (no department {department_id})")
            doctors = await conn.fetch(
                f"SELECT {DOCTOR_COLUMNS}{DOCTOR_FROM} WHERE d.department_id = $1 AND NOT d.disabled AND NOT a.disabled"
                " ORDER BY d.expert DESC, a.id", department_id,
            )
            return {**dict(row), "doctors": [dict(d) for d in doctors]}

        return await self.db.run(op)

    async def create_department(self, editor: Editor, department: Mapping[str, Any]) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            if await conn.fetchval("SELECT 1 FROM departments WHERE id = $1", department["id"]):
                raise Conflict(f"科室编号 {department['id']} 已存在 (department id taken)")
            campus, location = await place(conn, department.get("floor_id"), department.get("room", ""))
            await conn.execute(
                "INSERT INTO departments (id, name, campus, location, floor_id, room, intro, phone, sort_order,"
                " disabled) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, false)",
                department["id"], department["name"], campus, location, department.get("floor_id"),
                department.get("room", ""), department.get("intro", ""), department.get("phone", ""),
                department.get("sort_order", 0),
            )

        detail = {"name": department["name"], "floor_id": department.get("floor_id")}
        await self._change(editor, "department.create", f"department/{department['id']}", detail, op)

    async def change_department(self, editor: Editor, department_id: str, changes: Mapping[str, Any]) -> None:
        """Change some fields (name, floor_id, room, intro, phone, sort_order, disabled)."""
        columns = {"name", "floor_id", "room", "intro", "phone", "sort_order", "disabled"}
        assert set(changes) <= columns, set(changes) - columns

        async def op(conn: asyncpg.Connection) -> None:
            row = await conn.fetchrow("SELECT floor_id, room FROM departments WHERE id = $1 FOR UPDATE", department_id)
            if row is None:
                raise NotFound(f"科室 {department_id} 不存在 (no department {department_id})")
            # the place first: a floor that does not exist is refused before anything is written
            campus, location = await place(
                conn, changes.get("floor_id", row["floor_id"]), changes.get("room", row["room"])
            )
            values = {**changes, "campus": campus, "location": location}
            names = sorted(values)
            sets = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))
            await conn.execute(
                f"UPDATE departments SET {sets} WHERE id = $1", department_id, *(values[n] for n in names)
            )

        await self._change(editor, "department.change", f"department/{department_id}", summary(changes), op)

    async def open_departments(self, ids: Iterable[str]) -> set[str]:
        """Which of ``ids`` are departments that take doctors (exist and are not disabled)."""
        rows = await self.db.fetch(
            "SELECT id FROM departments WHERE id = ANY($1::varchar[]) AND NOT disabled", list(set(ids))
        )
        return {r["id"] for r in rows}
