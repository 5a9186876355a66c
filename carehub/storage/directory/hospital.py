"""The hospital's introduction and images, its campuses and floors, and the settings clients read
(PUB-1, PUB-2, PUB-6, ADM-4)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from carehub.errors import Conflict, Invalid

from ._base import DirectoryRepository, Editor
from .departments import refresh_places

#: settings clients read: directions to the hospital (PUB-6), the third-party triage service (OUT-1)
SETTINGS = ("map_url", "triage_url")


class HospitalStore(DirectoryRepository):
    """Hospital information, campuses with floors, settings."""

    async def settings(self) -> dict[str, str]:
        rows = await self.db.fetch("SELECT name, value FROM directory_settings")
        found = {r["name"]: r["value"] for r in rows}
        return {name: found.get(name, "") for name in SETTINGS}

    async def hospital(self) -> dict[str, Any]:
        async def op(conn: asyncpg.Connection) -> dict[str, Any]:
            info = await conn.fetchrow("SELECT name, intro, address, phone, updated_at FROM hospital_info")
            images = await conn.fetch("SELECT url, caption FROM hospital_images ORDER BY sort_order")
            campuses = await conn.fetch(
                "SELECT id, name, address, phone, map_url FROM campuses ORDER BY sort_order, id"
            )
            map_url = await conn.fetchval("SELECT value FROM directory_settings WHERE name = 'map_url'")
            base = dict(info) if info is not None else {"name": "", "intro": "", "address": "", "phone": "",
                                                        "updated_at": None}
            return {**base, "images": [dict(i) for i in images], "campuses": [dict(c) for c in campuses],
                    "map_url": map_url or ""}

        return await self.db.run(op)

    async def campuses(self) -> list[dict[str, Any]]:
        """Campuses, their floors (by building, low to high) and the departments on each floor."""

        async def op(conn: asyncpg.Connection) -> list[dict[str, Any]]:
            campuses = await conn.fetch(
                "SELECT id, name, address, phone, map_url, sort_order FROM campuses ORDER BY sort_order, id"
            )
            floors = await conn.fetch(
                "SELECT id, campus_id, building, name, floor_level, plan_url FROM floors"
                " ORDER BY building, floor_level, id"
            )
            departments = await conn.fetch(
                "SELECT id, name, floor_id, room FROM departments WHERE NOT disabled AND floor_id IS NOT NULL"
                " ORDER BY sort_order, id"
            )
            by_floor: dict[str, list[dict[str, Any]]] = {}
            for d in departments:
                by_floor.setdefault(d["floor_id"], []).append({"id": d["id"], "name": d["name"], "room": d["room"]})
            by_campus: dict[str, list[dict[str, Any]]] = {}
            for f in floors:
                by_campus.setdefault(f["campus_id"], []).append({
                    "id": f["id"], "building": f["building"], "name": f["name"], "level": f["floor_level"],
                    "plan_url": f["plan_url"], "departments": by_floor.get(f["id"], []),
                })
            return [{**dict(c), "floors": by_campus.get(c["id"], [])} for c in campuses]

        return await self.db.run(op)

    async def put_hospital(self, editor: Editor, info: Mapping[str, Any], images: Sequence[Mapping[str, str]]) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            args = (info["name"], info["intro"], info["address"], info["phone"], editor.account_id)
            status = await conn.execute(
                "UPDATE hospital_info SET name = $1, intro = $2, address = $3, phone = $4, updated_at = now(),"
                " updated_by = $5 WHERE id = 1", *args,
            )
            if status == "UPDATE 0":
                await conn.execute(
                    "INSERT INTO hospital_info (id, name, intro, address, phone, updated_at, updated_by)"
                    " VALUES (1, $1, $2, $3, $4, now(), $5)", *args,
                )
            await conn.execute("DELETE FROM hospital_images")
            await conn.executemany(
                "INSERT INTO hospital_images (sort_order, url, caption) VALUES ($1, $2, $3)",
                [(i, image["url"], image.get("caption", "")) for i, image in enumerate(images)],
            )

        await self._change(editor, "hospital.change", "hospital", {"images": len(images)}, op)

    async def put_settings(self, editor: Editor, values: Mapping[str, str]) -> dict[str, str]:
        if not values:
            return await self.settings()

        async def op(conn: asyncpg.Connection) -> None:
            for name, value in values.items():
                status = await conn.execute(
                    "UPDATE directory_settings SET value = $2, updated_at = now(), updated_by = $3 WHERE name = $1",
                    name, value, editor.account_id,
                )
                if status == "UPDATE 0":
                    await conn.execute(
                        "INSERT INTO directory_settings (name, value, updated_at, updated_by)"
                        " VALUES ($1, $2, now(), $3)",
                        name, value, editor.account_id,
                    )

        await self._change(editor, "settings.change", "settings", dict(values), op)
        return await self.settings()

    async def put_campus(
        self, editor: Editor, campus_id: str, campus: Mapping[str, Any], floors: Sequence[Mapping[str, Any]]
    ) -> None:
        """Create or replace a campus with its floors; a floor left out must have no departments."""
        ids = [f["id"] for f in floors]
        if len(set(ids)) != len(ids):
            raise Invalid("楼层编号重复 (floor ids repeat)")
        places = [(f["building"], f["name"]) for f in floors]
        if len(set(places)) != len(places):
            raise Invalid("同一楼宇的楼层名称重复 (a building lists a floor twice)")

        async def op(conn: asyncpg.Connection) -> None:
            others = await conn.fetch(
                "SELECT id FROM floors WHERE id = ANY($1::varchar[]) AND campus_id <> $2", ids, campus_id
            )
            if others:
                raise Conflict(f"楼层 {others[0]['id']} 属于其他院区 (floor belongs to another campus)")
            args = (campus_id, campus["name"], campus["address"], campus.get("phone", ""), campus.get("map_url", ""),
                    campus.get("sort_order", 0))
            status = await conn.execute(
                "UPDATE campuses SET name = $2, address = $3, phone = $4, map_url = $5, sort_order = $6 WHERE id = $1",
                *args,
            )
            if status == "UPDATE 0":
                await conn.execute(
                    "INSERT INTO campuses (id, name, address, phone, map_url, sort_order)"
                    " VALUES ($1, $2, $3, $4, $5, $6)",
                    *args,
                )
            gone = await conn.fetch(
                "SELECT f.id, (SELECT count(*) FROM departments d WHERE d.floor_id = f.id) AS used"
                " FROM floors f WHERE f.campus_id = $1 AND NOT (f.id = ANY($2::varchar[]))", campus_id, ids,
            )
            for g in gone:
                if g["used"]:
                    raise Conflict(f"楼层 {g['id']} 上还有科室，请先调整科室位置 (departments are on it)")
            await conn.execute(
                "DELETE FROM floors WHERE campus_id = $1 AND NOT (id = ANY($2::varchar[]))", campus_id, ids
            )
            for f in floors:
                row = (f["id"], campus_id, f["building"], f["name"], f["level"], f.get("plan_url", ""))
                status = await conn.execute(
                    "UPDATE floors SET campus_id = $2, building = $3, name = $4, floor_level = $5, plan_url = $6"
                    " WHERE id = $1", *row,
                )
                if status == "UPDATE 0":
                    await conn.execute(
                        "INSERT INTO floors (id, campus_id, building, name, floor_level, plan_url)"
                        " VALUES ($1, $2, $3, $4, $5, $6)", *row,
                    )
            await refresh_places(
                conn, "floor_id IN (SELECT id FROM floors WHERE campus_id = $1)", campus_id
            )

        await self._change(editor, "campus.change", f"campus/{campus_id}", {"floors": ",".join(ids)}, op)
