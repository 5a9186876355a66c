"""The hospital directory and its content (PUB-1..6, OUT-1, GUIDE-1, ADM-2..6).

Hospital introduction and images, campuses and floors and where each department is, expert
profiles, news, visit guide pages, announcements with read counts, the price list with its change
history, smart-triage rules and the settings clients read (map and third-party triage links).

Reads return JSON-ready dicts. Every write runs in one transaction with its audit entry
(:meth:`AuditLog.append_in`), so a change and its record commit or roll back together. Field
values are checked by :func:`clean` (table-driven, messages in Chinese); triage recommendations
are the pure function :func:`recommend`.

Errors: :class:`DirectoryNotFound` (no such thing), :class:`DirectoryConflict` (the change clashes
with what is stored), :class:`DirectoryInvalid` (a value is not acceptable). They carry no HTTP
status: the REST layer maps them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import asyncpg

from .audit import AuditEntry, AuditLog
from .db import Database

__all__ = [
    "BODY_PARTS",
    "SETTINGS",
    "DirectoryConflict",
    "DirectoryError",
    "DirectoryInvalid",
    "DirectoryNotFound",
    "DirectoryStore",
    "Editor",
    "Recommendation",
    "TriageQuery",
    "TriageRule",
    "check_id",
    "clean",
    "recommend",
    "seed_directory_demo",
]

#: regions of the body diagram (OUT-1); every triage rule names one of them
BODY_PARTS = ("头部", "颈部", "胸部", "腹部", "腰背部", "盆腔", "上肢", "下肢", "皮肤", "全身")
#: settings clients read: directions to the hospital (PUB-6), the third-party triage service (OUT-1)
SETTINGS = ("map_url", "triage_url")
MAX_RECOMMENDATIONS = 5


class DirectoryError(Exception):
    """A directory change or lookup that cannot be done; the message is for the user (Chinese)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DirectoryNotFound(DirectoryError):
    pass


class DirectoryConflict(DirectoryError):
    pass


class DirectoryInvalid(DirectoryError):
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class Editor:
    """Who makes a change (an admin), for the audit trail and ``updated_by`` columns."""

    account_id: str
    roles: tuple[str, ...]
    ip: str | None


# ---- field checks ----------------------------------------------------------------------------

_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_URL = re.compile(r"^https?://[^\s<>\"]+$")
_KEYWORD_SPLIT = re.compile(r"[,，、;；\s]+")


@dataclasses.dataclass(frozen=True, slots=True)
class _Text:
    label: str
    max_length: int
    required: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class _Url:
    label: str
    required: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class _Id:
    label: str


@dataclasses.dataclass(frozen=True, slots=True)
class _Int:
    label: str
    low: int
    high: int


_Check = _Text | _Url | _Id | _Int

#: what each kind of thing may hold, and the limits each value must keep
FIELDS: dict[str, dict[str, _Check]] = {
    "hospital": {
        "name": _Text("医院名称", 100), "intro": _Text("医院简介", 20000), "address": _Text("地址", 300),
        "phone": _Text("电话", 40),
    },
    "image": {"url": _Url("图片地址", required=True), "caption": _Text("图片说明", 200, required=False)},
    "campus": {
        "name": _Text("院区名称", 100), "address": _Text("院区地址", 300), "phone": _Text("院区电话", 40, False),
        "map_url": _Url("院区地图链接"), "sort_order": _Int("排序", -100000, 100000),
    },
    "floor": {
        "id": _Id("楼层编号"), "building": _Text("楼宇", 100), "name": _Text("楼层名称", 20),
        "level": _Int("楼层", -10, 200), "plan_url": _Url("楼层平面图"),
    },
    "department": {
        "id": _Id("科室编号"), "name": _Text("科室名称", 100), "floor_id": _Id("楼层编号"),
        "room": _Text("房间", 50, False), "intro": _Text("科室简介", 20000, False),
        "phone": _Text("科室电话", 40, False),
        "sort_order": _Int("排序", -100000, 100000),
    },
    "doctor": {
        "department_id": _Id("科室编号"), "title": _Text("职称", 50), "specialty": _Text("擅长", 200),
        "intro": _Text("医生简介", 20000, False), "photo_url": _Url("照片地址"),
    },
    "news": {
        "title": _Text("新闻标题", 200), "summary": _Text("新闻摘要", 500, False), "body": _Text("新闻正文", 100000),
        "cover_url": _Url("封面图片"),
    },
    "guide": {
        "title": _Text("指南标题", 200), "body": _Text("指南正文", 100000),
        "sort_order": _Int("排序", -100000, 100000),
    },
    "announcement": {"title": _Text("公告标题", 200), "body": _Text("公告正文", 20000)},
    "price": {
        "name": _Text("项目名称", 200), "category": _Text("类别", 50, False), "unit": _Text("单位", 20),
        "price_fen": _Int("价格(分)", 0, 10**11),
    },
    "triage": {
        "keywords": _Text("症状关键词", 500), "note": _Text("说明", 200, False),
        "min_age": _Int("最小年龄", 0, 150), "max_age": _Int("最大年龄", 0, 150),
        "priority": _Int("优先级", -1000, 1000),
    },
    "settings": {"map_url": _Url("地图导航链接"), "triage_url": _Url("第三方分诊链接")},
}


def _check(name: str, check: _Check, value: Any) -> Any:
    if isinstance(check, _Int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise DirectoryInvalid(f"{check.label}必须是整数 ({name} must be a whole number)")
        if not check.low <= value <= check.high:
            raise DirectoryInvalid(f"{check.label}必须在 {check.low} 到 {check.high} 之间 ({name} out of range)")
        return value
    if not isinstance(value, str):
        raise DirectoryInvalid(f"{check.label}必须是文字 ({name} must be a string)")
    if "\x00" in value:
        raise DirectoryInvalid(f"{check.label}含有不允许的字符 ({name} contains a NUL character)")
    value = value.strip()
    if isinstance(check, _Id):
        if not _ID.match(value):
            raise DirectoryInvalid(f"{check.label}只能由 1-32 位字母、数字、_ 或 - 组成 ({name} is not an id)")
        return value
    if isinstance(check, _Url):
        if not value:
            if check.required:
                raise DirectoryInvalid(f"{check.label}不能为空 ({name} is required)")
            return ""
        if len(value) > 500 or not _URL.match(value):
            raise DirectoryInvalid(f"{check.label}必须是 http:// 或 https:// 开头的网址 ({name} must be a URL)")
        return value
    if check.required and not value:
        raise DirectoryInvalid(f"{check.label}不能为空 ({name} is required)")
    if len(value) > check.max_length:
        raise DirectoryInvalid(f"{check.label}不能超过 {check.max_length} 个字 ({name} is too long)")
    return value


def clean(kind: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The given values of a ``kind`` of thing (see :data:`FIELDS`), checked and trimmed.

    Only the given names are checked (a partial change checks what it changes); names not in
    the table pass through unchanged (booleans, times: their type is checked by the caller).
    ``None`` is kept for optional ids and numbers (e.g. a department on no floor).
    """
    table = FIELDS[kind]
    out: dict[str, Any] = {}
    for name, value in values.items():
        check = table.get(name)
        if check is None or (value is None and isinstance(check, _Id | _Int)):
            out[name] = value
        else:
            out[name] = _check(name, check, value)
    return out


def check_id(value: str, label: str) -> str:
    """An id an admin chose (department, campus, floor, guide page, price code, triage rule)."""
    checked: str = _check("id", _Id(label), value)
    return checked


def keywords_of(text: str) -> tuple[str, ...]:
    """Symptom keywords from an admin's list (separated by commas, 、 or spaces), unique, in order."""
    return tuple(dict.fromkeys(k for k in _KEYWORD_SPLIT.split(text) if k))


def location_text(building: str, floor_name: str, room: str) -> str:
    """What older clients show as a department's ``location``: 门诊楼 + 3层 + A区."""
    return f"{building}{floor_name}{room}"


def _new_id() -> str:
    return uuid.uuid4().hex[:16]


# ---- smart triage: a pure function over the rules ---------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class TriageRule:
    """Symptoms at a body part (for a sex, an age range if given) -> departments, best first."""

    id: str
    body_part: str
    keywords: tuple[str, ...]
    departments: tuple[str, ...]
    sex: str | None = None
    min_age: int | None = None
    max_age: int | None = None
    priority: int = 0
    note: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class TriageQuery:
    body_part: str
    symptoms: tuple[str, ...] = ()
    sex: str | None = None
    age: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Recommendation:
    department_id: str
    matched: tuple[str, ...]
    rules: tuple[str, ...]


def _applies(rule: TriageRule, query: TriageQuery) -> bool:
    # a rule limited to a sex or an age range applies only when the patient told us theirs
    if rule.body_part != query.body_part:
        return False
    if rule.sex is not None and rule.sex != query.sex:
        return False
    if rule.min_age is not None and (query.age is None or query.age < rule.min_age):
        return False
    return rule.max_age is None or (query.age is not None and query.age <= rule.max_age)


def _matched(rule: TriageRule, symptoms: Sequence[str]) -> tuple[str, ...]:
    said = [s.strip().lower() for s in symptoms if s.strip()]
    return tuple(k for k in rule.keywords if any(k.lower() in s or s in k.lower() for s in said))


def recommend(
    rules: Iterable[TriageRule], query: TriageQuery, limit: int = MAX_RECOMMENDATIONS
) -> list[Recommendation]:
    """Departments for a patient's symptoms, best first (OUT-1).

    A rule applies when its body part is the one picked, its sex and age range (if any) fit, and
    (when symptoms are given) at least one of its keywords is in a symptom or contains it. A
    department ranks by its best rule: more matched keywords first, then the rule's priority,
    then the department's place in that rule; ties go to the one more rules recommend, then id.
    """
    best: dict[str, tuple[int, int, int]] = {}
    matched: dict[str, dict[str, None]] = {}
    rule_ids: dict[str, list[str]] = {}
    for rule in rules:
        if not _applies(rule, query):
            continue
        hits = _matched(rule, query.symptoms)
        if query.symptoms and not hits:
            continue
        for place, department in enumerate(rule.departments):
            key = (len(hits), rule.priority, -place)
            best[department] = max(best.get(department, key), key)
            matched.setdefault(department, {}).update(dict.fromkeys(hits))
            rule_ids.setdefault(department, []).append(rule.id)
    order = sorted(best, key=lambda d: (best[d], len(rule_ids[d]), [-ord(c) for c in d]), reverse=True)
    return [Recommendation(d, tuple(matched[d]), tuple(rule_ids[d])) for d in order[:limit]]


# ---- the store -----------------------------------------------------------------------------------

_DEPARTMENT = (
    "d.id, d.name, d.campus, d.location, d.floor_id, d.room, d.intro, d.phone, d.sort_order, d.disabled,"
    " f.campus_id, f.building, f.name AS floor, f.floor_level AS level"
)
_DEPARTMENT_FROM = " FROM departments d LEFT JOIN floors f ON f.id = d.floor_id"
_DOCTOR = (
    "a.id, a.display_name AS name, d.department_id, dep.name AS department, d.title, d.specialty, d.intro,"
    " d.photo_url, d.expert, d.disabled OR a.disabled AS disabled"
)
_DOCTOR_FROM = " FROM doctors d JOIN accounts a ON a.id = d.account_id JOIN departments dep ON dep.id = d.department_id"
_ANNOUNCEMENT = "n.id, n.title, n.body, n.starts_at, n.ends_at, n.withdrawn, n.created_at, n.updated_at"
_PRICE = "code, name, category, unit, price_fen, active, updated_at"
_TRIAGE = "id, body_part, keywords, sex, min_age, max_age, priority, note"


def _escape_like(text: str) -> str:
    return "%" + text.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"


async def _place(conn: asyncpg.Connection, floor_id: str | None, room: str) -> tuple[str, str]:
    """The display text (campus, location) of a place: a floor and a room on it."""
    if floor_id is None:
        return "", room
    row = await conn.fetchrow(
        "SELECT c.name AS campus, f.building, f.name FROM floors f JOIN campuses c ON c.id = f.campus_id"
        " WHERE f.id = $1", floor_id,
    )
    if row is None:
        raise DirectoryInvalid(f"楼层 {floor_id} 不存在 (no floor {floor_id})")
    return row["campus"], location_text(row["building"], row["name"], room)


async def _refresh_places(conn: asyncpg.Connection, where: str, *args: Any) -> None:
    """Rewrite the display text of the departments ``where`` selects, after a place changed."""
    for d in await conn.fetch(f"SELECT id, floor_id, room FROM departments WHERE {where}", *args):
        campus, location = await _place(conn, d["floor_id"], d["room"])
        await conn.execute("UPDATE departments SET campus = $2, location = $3 WHERE id = $1", d["id"], campus, location)


def _triage_rule(r: asyncpg.Record, departments: Sequence[str]) -> TriageRule:
    return TriageRule(
        r["id"], r["body_part"], keywords_of(r["keywords"]), tuple(departments), r["sex"], r["min_age"],
        r["max_age"], r["priority"], r["note"],
    )


async def _load_rules(conn: asyncpg.Connection, body_part: str | None = None) -> list[TriageRule]:
    rows = await conn.fetch(
        f"SELECT {_TRIAGE} FROM triage_rules WHERE $1::varchar IS NULL OR body_part = $1 ORDER BY id", body_part
    )
    links = await conn.fetch(
        "SELECT rule_id, department_id FROM triage_rule_departments WHERE rule_id = ANY($1::varchar[])"
        " ORDER BY rule_id, sort_order",
        [r["id"] for r in rows],
    )
    by_rule: dict[str, list[str]] = {}
    for link in links:
        by_rule.setdefault(link["rule_id"], []).append(link["department_id"])
    return [_triage_rule(r, by_rule.get(r["id"], [])) for r in rows]


def _rule_json(rule: TriageRule) -> dict[str, Any]:
    return {
        "id": rule.id, "body_part": rule.body_part, "keywords": list(rule.keywords), "sex": rule.sex,
        "min_age": rule.min_age, "max_age": rule.max_age, "priority": rule.priority, "note": rule.note,
        "departments": list(rule.departments),
    }


class DirectoryStore:
    """Queries and audited changes of the directory, over a :class:`Database`."""

    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    async def _change(self, editor: Editor, action: str, target: str, detail: Mapping[str, Any], op: Any,
                      *args: Any) -> Any:
        """Run ``op(conn, *args)`` and record ``action`` on ``target`` in one transaction."""

        async def run(conn: asyncpg.Connection) -> Any:
            async with conn.transaction():
                result = await op(conn, *args)
                await self.audit.append_in(conn, AuditEntry(
                    action=action, target=target, actor_id=editor.account_id, actor_roles=editor.roles,
                    source_ip=editor.ip, detail=detail,
                ))
                return result

        try:
            return await self.db.run(run)
        except asyncpg.UniqueViolationError:  # two admins creating the same thing at once
            raise DirectoryConflict("同时有其他修改，请刷新后重试 (changed concurrently, try again)") from None
        except (asyncpg.ForeignKeyViolationError, asyncpg.CheckViolationError) as err:
            # the checks above come first; this is the database's word when they raced a change
            raise DirectoryInvalid(f"数据不一致，请刷新后重试 ({err.constraint_name})") from None

    # --- hospital, campuses, settings (PUB-1, PUB-2, PUB-6, ADM-4) ------------------------------

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
            raise DirectoryInvalid("楼层编号重复 (floor ids repeat)")
        places = [(f["building"], f["name"]) for f in floors]
        if len(set(places)) != len(places):
            raise DirectoryInvalid("同一楼宇的楼层名称重复 (a building lists a floor twice)")

        async def op(conn: asyncpg.Connection) -> None:
            others = await conn.fetch(
                "SELECT id FROM floors WHERE id = ANY($1::varchar[]) AND campus_id <> $2", ids, campus_id
            )
            if others:
                raise DirectoryConflict(f"楼层 {others[0]['id']} 属于其他院区 (floor belongs to another campus)")
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
                    raise DirectoryConflict(f"楼层 {g['id']} 上还有科室，请先调整科室位置 (departments are on it)")
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
            await _refresh_places(
                conn, "floor_id IN (SELECT id FROM floors WHERE campus_id = $1)", campus_id
            )

        await self._change(editor, "campus.change", f"campus/{campus_id}", {"floors": ",".join(ids)}, op)

    # --- departments (PUB-2, ADM-2) ---------------------------------------------------------

    async def departments(self, *, include_disabled: bool = False) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            f"SELECT {_DEPARTMENT}{_DEPARTMENT_FROM} WHERE $1 OR NOT d.disabled ORDER BY d.sort_order, d.id",
            include_disabled,
        )
        return [dict(r) for r in rows]

    async def department(self, department_id: str) -> dict[str, Any]:
        async def op(conn: asyncpg.Connection) -> dict[str, Any]:
            row = await conn.fetchrow(
                f"SELECT {_DEPARTMENT}{_DEPARTMENT_FROM} WHERE d.id = $1 AND NOT d.disabled", department_id
            )
            if row is None:
                raise DirectoryNotFound(f"科室 {department_id} 不存在 (no department {department_id})")
            doctors = await conn.fetch(
                f"SELECT {_DOCTOR}{_DOCTOR_FROM} WHERE d.department_id = $1 AND NOT d.disabled AND NOT a.disabled"
                " ORDER BY d.expert DESC, a.id", department_id,
            )
            return {**dict(row), "doctors": [dict(d) for d in doctors]}

        return await self.db.run(op)

    async def create_department(self, editor: Editor, department: Mapping[str, Any]) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            if await conn.fetchval("SELECT 1 FROM departments WHERE id = $1", department["id"]):
                raise DirectoryConflict(f"科室编号 {department['id']} 已存在 (department id taken)")
            campus, location = await _place(conn, department.get("floor_id"), department.get("room", ""))
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
                raise DirectoryNotFound(f"科室 {department_id} 不存在 (no department {department_id})")
            # the place first: a floor that does not exist is refused before anything is written
            campus, location = await _place(
                conn, changes.get("floor_id", row["floor_id"]), changes.get("room", row["room"])
            )
            values = {**changes, "campus": campus, "location": location}
            names = sorted(values)
            sets = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))
            await conn.execute(
                f"UPDATE departments SET {sets} WHERE id = $1", department_id, *(values[n] for n in names)
            )

        await self._change(editor, "department.change", f"department/{department_id}", _summary(changes), op)

    # --- doctors (PUB-4, ADM-3) -------------------------------------------------------------

    async def doctors(
        self, *, department: str | None = None, expert_only: bool = False, include_disabled: bool = False
    ) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            f"SELECT {_DOCTOR}{_DOCTOR_FROM}"
            " WHERE ($1 OR NOT (d.disabled OR a.disabled)) AND ($2::varchar IS NULL OR d.department_id = $2)"
            " AND (NOT $3 OR d.expert) ORDER BY a.id",
            include_disabled, department, expert_only,
        )
        return [dict(r) for r in rows]

    async def doctor(self, doctor_id: str) -> dict[str, Any]:
        row = await self.db.fetchrow(
            f"SELECT {_DOCTOR}{_DOCTOR_FROM} WHERE a.id = $1 AND NOT d.disabled AND NOT a.disabled", doctor_id
        )
        if row is None:
            raise DirectoryNotFound(f"医生 {doctor_id} 不存在 (no doctor {doctor_id})")
        return dict(row)

    async def open_departments(self, ids: Iterable[str]) -> set[str]:
        """Which of ``ids`` are departments that take doctors (exist and are not disabled)."""
        rows = await self.db.fetch(
            "SELECT id FROM departments WHERE id = ANY($1::varchar[]) AND NOT disabled", list(set(ids))
        )
        return {r["id"] for r in rows}

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
                raise DirectoryNotFound(f"医生 {doctor_id} 不存在 (no doctor {doctor_id})")
            department = changes.get("department_id")
            if department is not None and not await conn.fetchval(
                "SELECT 1 FROM departments WHERE id = $1 AND NOT disabled", department
            ):
                raise DirectoryInvalid(f"科室 {department} 不存在或已停用 (no open department {department})")
            if changes:
                names = sorted(changes)
                sets = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))
                await conn.execute(
                    f"UPDATE doctors SET {sets} WHERE account_id = $1", doctor_id, *(changes[n] for n in names)
                )

        await self._change(editor, "doctor.change", f"doctor/{doctor_id}", _summary(changes), op)

    # --- news and guide pages (PUB-3, PUB-5, GUIDE-1) -------------------------------------------

    async def news(
        self, *, now: dt.datetime, limit: int, offset: int, everything: bool = False
    ) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            "SELECT id, title, summary, cover_url, published_at, hidden FROM news"
            " WHERE $1 OR (NOT hidden AND published_at <= $2) ORDER BY published_at DESC, id"
            f" LIMIT {int(limit)} OFFSET {int(offset)}",
            everything, now,
        )
        return [dict(r) for r in rows]

    async def news_item(self, news_id: str, *, now: dt.datetime) -> dict[str, Any]:
        row = await self.db.fetchrow(
            "SELECT id, title, summary, body, cover_url, published_at FROM news"
            " WHERE id = $1 AND NOT hidden AND published_at <= $2", news_id, now,
        )
        if row is None:
            raise DirectoryNotFound(f"新闻 {news_id} 不存在 (no news {news_id})")
        return dict(row)

    async def create_news(self, editor: Editor, item: Mapping[str, Any]) -> str:
        news_id = _new_id()

        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "INSERT INTO news (id, title, summary, body, cover_url, published_at, hidden, created_by, updated_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())",
                news_id, item["title"], item.get("summary", ""), item["body"], item.get("cover_url", ""),
                item["published_at"], item.get("hidden", False), editor.account_id,
            )

        await self._change(editor, "news.create", f"news/{news_id}", {"title": item["title"]}, op)
        return news_id

    async def change_news(self, editor: Editor, news_id: str, changes: Mapping[str, Any]) -> None:
        columns = {"title", "summary", "body", "cover_url", "published_at", "hidden"}
        assert set(changes) <= columns, set(changes) - columns
        await self._update(editor, "news", news_id, changes, "news.change", f"news/{news_id}", f"新闻 {news_id} 不存在")

    async def guide(self, *, everything: bool = False) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            "SELECT slug, title, sort_order, hidden, updated_at FROM guide_pages WHERE $1 OR NOT hidden"
            " ORDER BY sort_order, slug", everything,
        )
        return [dict(r) for r in rows]

    async def guide_page(self, slug: str) -> dict[str, Any]:
        row = await self.db.fetchrow(
            "SELECT slug, title, body, updated_at FROM guide_pages WHERE slug = $1 AND NOT hidden", slug
        )
        if row is None:
            raise DirectoryNotFound(f"就医指南 {slug} 不存在 (no guide page {slug})")
        return dict(row)

    async def put_guide_page(self, editor: Editor, slug: str, page: Mapping[str, Any]) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            args = (slug, page["title"], page["body"], page.get("sort_order", 0), page.get("hidden", False),
                    editor.account_id)
            status = await conn.execute(
                "UPDATE guide_pages SET title = $2, body = $3, sort_order = $4, hidden = $5, updated_at = now(),"
                " updated_by = $6 WHERE slug = $1", *args,
            )
            if status == "UPDATE 0":
                await conn.execute(
                    "INSERT INTO guide_pages (slug, title, body, sort_order, hidden, updated_at, updated_by)"
                    " VALUES ($1, $2, $3, $4, $5, now(), $6)", *args,
                )

        await self._change(editor, "guide.change", f"guide/{slug}", {"title": page["title"]}, op)

    # --- announcements (ADM-5) --------------------------------------------------------------

    async def current_announcements(self, *, now: dt.datetime, reader: str | None) -> list[dict[str, Any]]:
        """Announcements showing now, newest first; ``read`` says whether ``reader`` marked each read."""
        rows = await self.db.fetch(
            f"SELECT {_ANNOUNCEMENT}, EXISTS (SELECT 1 FROM announcement_reads r WHERE r.announcement_id = n.id"
            " AND r.account_id = $2) AS has_read FROM announcements n"
            " WHERE NOT n.withdrawn AND n.starts_at <= $1 AND n.ends_at > $1 ORDER BY n.starts_at DESC, n.id",
            now, reader,
        )
        return [
            {"id": r["id"], "title": r["title"], "body": r["body"], "starts_at": r["starts_at"],
             "ends_at": r["ends_at"], **({"read": r["has_read"]} if reader is not None else {})}
            for r in rows
        ]

    async def all_announcements(self, *, now: dt.datetime) -> list[dict[str, Any]]:
        """Every announcement with its read count and whether it is showing now (for admins)."""
        rows = await self.db.fetch(
            f"SELECT {_ANNOUNCEMENT}, (SELECT count(*) FROM announcement_reads r WHERE r.announcement_id = n.id)"
            " AS read_count FROM announcements n ORDER BY n.starts_at DESC, n.id"
        )
        return [
            {**dict(r), "showing": not r["withdrawn"] and r["starts_at"] <= now < r["ends_at"]} for r in rows
        ]

    async def create_announcement(self, editor: Editor, item: Mapping[str, Any]) -> str:
        announcement_id = _new_id()
        _check_period(item["starts_at"], item["ends_at"])

        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "INSERT INTO announcements (id, title, body, starts_at, ends_at, withdrawn, created_by, created_at,"
                " updated_at) VALUES ($1, $2, $3, $4, $5, false, $6, now(), now())",
                announcement_id, item["title"], item["body"], item["starts_at"], item["ends_at"], editor.account_id,
            )

        detail = {"title": item["title"], "starts_at": item["starts_at"], "ends_at": item["ends_at"]}
        await self._change(editor, "announcement.create", f"announcement/{announcement_id}", detail, op)
        return announcement_id

    async def change_announcement(self, editor: Editor, announcement_id: str, changes: Mapping[str, Any]) -> None:
        columns = {"title", "body", "starts_at", "ends_at", "withdrawn"}
        assert set(changes) <= columns, set(changes) - columns

        async def check(conn: asyncpg.Connection) -> None:
            row = await conn.fetchrow("SELECT starts_at, ends_at FROM announcements WHERE id = $1", announcement_id)
            if row is not None:
                _check_period(changes.get("starts_at", row["starts_at"]), changes.get("ends_at", row["ends_at"]))

        await self._update(
            editor, "announcements", announcement_id, changes, "announcement.change",
            f"announcement/{announcement_id}", f"公告 {announcement_id} 不存在", before=check,
        )

    async def mark_read(self, announcement_id: str, account_id: str, *, now: dt.datetime) -> bool:
        """Count ``account_id`` as a reader of a showing announcement; False if it had already read it."""

        async def op(conn: asyncpg.Connection) -> bool:
            showing = await conn.fetchval(
                "SELECT 1 FROM announcements WHERE id = $1 AND NOT withdrawn AND starts_at <= $2 AND ends_at > $2",
                announcement_id, now,
            )
            if not showing:
                raise DirectoryNotFound(f"公告 {announcement_id} 不存在或已下线 (no current announcement)")
            try:
                status = await conn.execute(
                    "INSERT INTO announcement_reads (announcement_id, account_id, read_at)"
                    " SELECT $1::varchar, $2::varchar, $3::timestamptz"
                    " WHERE NOT EXISTS (SELECT 1 FROM announcement_reads WHERE announcement_id = $1"
                    " AND account_id = $2)",
                    announcement_id, account_id, now,
                )
            except asyncpg.UniqueViolationError:  # the same account, twice at once
                return False
            return bool(status == "INSERT 0 1")

        return await self.db.run(op)

    # --- the price list (ADM-6) -------------------------------------------------------------

    async def prices(self, *, search: str | None, category: str | None) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            f"SELECT {_PRICE} FROM price_items WHERE active"
            " AND ($1::varchar IS NULL OR name LIKE $1 ESCAPE '!' OR code LIKE $1 ESCAPE '!')"
            " AND ($2::varchar IS NULL OR category = $2) ORDER BY category, code",
            _escape_like(search) if search else None, category,
        )
        return [dict(r) for r in rows]

    async def put_price(self, editor: Editor, code: str, item: Mapping[str, Any]) -> dict[str, Any] | None:
        """Create or change a price item, keeping the change; None when nothing changed."""
        new = (item["name"], item.get("category", ""), item["unit"], item["price_fen"], item.get("active", True))

        async def op(conn: asyncpg.Connection) -> dict[str, Any] | None:
            old = await conn.fetchrow(f"SELECT {_PRICE} FROM price_items WHERE code = $1 FOR UPDATE", code)
            if old is None:
                await conn.execute(
                    "INSERT INTO price_items (code, name, category, unit, price_fen, active, updated_at)"
                    " VALUES ($1, $2, $3, $4, $5, $6, now())", code, *new,
                )
                before: tuple[Any, ...] = (None,) * 5
            else:
                before = (old["name"], old["category"], old["unit"], old["price_fen"], old["active"])
                if before == new:
                    return None
                await conn.execute(
                    "UPDATE price_items SET name = $2, category = $3, unit = $4, price_fen = $5, active = $6,"
                    " updated_at = now() WHERE code = $1", code, *new,
                )
            await conn.execute(
                "INSERT INTO price_changes (code, changed_at, changed_by, old_name, new_name, old_category,"
                " new_category, old_unit, new_unit, old_price_fen, new_price_fen, old_active, new_active)"
                " VALUES ($1, now(), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                code, editor.account_id, *(v for pair in zip(before, new, strict=True) for v in pair),
            )
            return {"old_price_fen": before[3], "new_price_fen": new[3]}

        # no audit entry for a change that changed nothing
        async def run(conn: asyncpg.Connection) -> dict[str, Any] | None:
            async with conn.transaction():
                change = await op(conn)
                if change is not None:
                    await self.audit.append_in(conn, AuditEntry(
                        action="price.change", target=f"price/{code}", actor_id=editor.account_id,
                        actor_roles=editor.roles, source_ip=editor.ip, detail=change,
                    ))
                return change

        try:
            return await self.db.run(run)
        except asyncpg.UniqueViolationError:  # two admins creating the same item at once
            raise DirectoryConflict("同时有其他修改，请刷新后重试 (changed concurrently, try again)") from None

    async def price_history(self, *, code: str | None, limit: int) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            "SELECT c.id, c.code, c.changed_at, c.changed_by, a.display_name AS changed_by_name,"
            " c.old_name, c.new_name, c.old_category, c.new_category, c.old_unit, c.new_unit,"
            " c.old_price_fen, c.new_price_fen, c.old_active, c.new_active"
            " FROM price_changes c LEFT JOIN accounts a ON a.id = c.changed_by"
            f" WHERE $1::varchar IS NULL OR c.code = $1 ORDER BY c.id DESC LIMIT {int(limit)}",
            code,
        )
        return [dict(r) for r in rows]

    # --- smart triage (OUT-1) ---------------------------------------------------------------

    async def triage_rules(self, body_part: str | None = None) -> list[TriageRule]:
        return await self.db.run(_load_rules, body_part)

    async def triage_rules_json(self) -> list[dict[str, Any]]:
        return [_rule_json(r) for r in await self.triage_rules()]

    async def put_triage_rule(self, editor: Editor, rule: TriageRule) -> None:
        if not rule.keywords:
            raise DirectoryInvalid("至少填写一个症状关键词 (give at least one keyword)")
        if not rule.departments or len(set(rule.departments)) != len(rule.departments):
            raise DirectoryInvalid("推荐科室不能为空或重复 (departments must be given once each)")

        async def op(conn: asyncpg.Connection) -> None:
            found = {r["id"] for r in await conn.fetch(
                "SELECT id FROM departments WHERE id = ANY($1::varchar[])", list(rule.departments)
            )}
            missing = [d for d in rule.departments if d not in found]
            if missing:
                raise DirectoryInvalid(f"科室 {', '.join(missing)} 不存在 (no such departments)")
            args = (rule.id, rule.body_part, ",".join(rule.keywords), rule.sex, rule.min_age, rule.max_age,
                    rule.priority, rule.note)
            status = await conn.execute(
                "UPDATE triage_rules SET body_part = $2, keywords = $3, sex = $4, min_age = $5, max_age = $6,"
                " priority = $7, note = $8, updated_at = now() WHERE id = $1", *args,
            )
            if status == "UPDATE 0":
                await conn.execute(
                    "INSERT INTO triage_rules (id, body_part, keywords, sex, min_age, max_age, priority, note,"
                    " updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())", *args,
                )
            await conn.execute("DELETE FROM triage_rule_departments WHERE rule_id = $1", rule.id)
            await conn.executemany(
                "INSERT INTO triage_rule_departments (rule_id, department_id, sort_order) VALUES ($1, $2, $3)",
                [(rule.id, d, i) for i, d in enumerate(rule.departments)],
            )

        detail = {"body_part": rule.body_part, "keywords": ",".join(rule.keywords),
                  "departments": ",".join(rule.departments)}
        await self._change(editor, "triage.rule_change", f"triage/{rule.id}", detail, op)

    async def delete_triage_rule(self, editor: Editor, rule_id: str) -> None:
        async def op(conn: asyncpg.Connection) -> None:
            await conn.execute("DELETE FROM triage_rule_departments WHERE rule_id = $1", rule_id)
            if await conn.execute("DELETE FROM triage_rules WHERE id = $1", rule_id) == "DELETE 0":
                raise DirectoryNotFound(f"分诊规则 {rule_id} 不存在 (no triage rule {rule_id})")

        await self._change(editor, "triage.rule_delete", f"triage/{rule_id}", {}, op)

    # --- shared -------------------------------------------------------------------------------

    async def _update(
        self, editor: Editor, table: str, row_id: str, changes: Mapping[str, Any], action: str, target: str,
        missing: str, before: Any = None,
    ) -> None:
        """Change some columns of the row ``row_id`` of ``table`` (a table with ``id`` and ``updated_at``)."""

        async def op(conn: asyncpg.Connection) -> None:
            if before is not None:
                await before(conn)
            names = sorted(changes)
            sets = ", ".join([f"{name} = ${i + 2}" for i, name in enumerate(names)] + ["updated_at = now()"])
            status = await conn.execute(
                f"UPDATE {table} SET {sets} WHERE id = $1", row_id, *(changes[n] for n in names)
            )
            if status == "UPDATE 0":
                raise DirectoryNotFound(missing)

        await self._change(editor, action, target, _summary(changes), op)


def _check_period(starts_at: dt.datetime, ends_at: dt.datetime) -> None:
    if ends_at <= starts_at:
        raise DirectoryInvalid("结束时间必须晚于开始时间 (ends_at must be after starts_at)")


def _summary(changes: Mapping[str, Any]) -> dict[str, Any]:
    """What an audit entry says about a change: short values as they are, long text by its size."""
    return {k: (f"<{len(v)} 字>" if isinstance(v, str) and len(v) > 80 else v) for k, v in changes.items()}


# ---- the demo hospital's content ---------------------------------------------------------------

_DEMO_CAMPUSES = [
    ("main", "本部院区", "北京市东城区示范路1号", "010-65000000", "https://map.example.cn/carehub/main", 0),
    ("east", "东院区", "北京市朝阳区东坝路88号", "010-65000888", "https://map.example.cn/carehub/east", 1),
]
_DEMO_FLOORS = [
    ("main-op-1", "main", "门诊楼", "1层", 1), ("main-op-2", "main", "门诊楼", "2层", 2),
    ("main-op-3", "main", "门诊楼", "3层", 3), ("east-s-2", "east", "外科楼", "2层", 2),
    ("east-s-4", "east", "外科楼", "4层", 4),
]
#: department -> (floor, room) of the demo departments seeded by carehub.demo
_DEMO_PLACES = {
    "cardio": ("main-op-3", "A区"), "resp": ("main-op-3", "B区"), "peds": ("main-op-2", ""),
    "ortho": ("east-s-4", ""), "derm": ("east-s-2", ""),
}
_DEMO_GUIDE = [
    ("registration", "挂号须知", "可通过微信小程序、自助机或人工窗口挂号。首次就诊请携带身份证建档。", 0),
    ("visit", "就诊流程", "预约 → 到院签到 → 候诊叫号 → 就诊 → 缴费 → 检查/取药。", 1),
    ("insurance", "医保报销", "持医保电子凭证或社保卡结算，异地就医请先办理备案。", 2),
]
_DEMO_PRICES = [
    ("GH001", "普通门诊诊查费", "挂号诊查", "次", 1000), ("GH002", "副主任医师诊查费", "挂号诊查", "次", 2500),
    ("GH003", "主任医师诊查费", "挂号诊查", "次", 4000), ("GH004", "急诊诊查费", "挂号诊查", "次", 1500),
    ("JY001", "血常规", "检验", "项", 2000), ("JY002", "尿常规", "检验", "项", 1500),
    ("JY003", "肝功能", "检验", "组", 6000), ("JY004", "血脂四项", "检验", "组", 4800),
    ("JY005", "糖化血红蛋白", "检验", "项", 6500), ("JC001", "胸部正位 X 线摄影", "检查", "次", 8000),
    ("JC002", "心电图", "检查", "次", 2500), ("JC003", "腹部彩超", "检查", "次", 18000),
    ("JC004", "头颅 CT 平扫", "检查", "次", 30000), ("JC005", "膝关节 MRI", "检查", "次", 58000),
    ("ZL001", "静脉输液", "治疗", "次", 1200), ("ZL002", "肌肉注射", "治疗", "次", 500),
    ("ZL003", "清创缝合(小)", "治疗", "次", 9000), ("ZL004", "雾化吸入", "治疗", "次", 1600),
    ("CW001", "普通病房床位费", "床位", "日", 5000), ("CW002", "双人病房床位费", "床位", "日", 8000),
]
_DEMO_TRIAGE: list[tuple[str, str, str, str | None, int | None, int | None, int, tuple[str, ...]]] = [
    ("chest-pain", "胸部", "胸痛,胸闷,心悸,心慌", None, None, None, 10, ("cardio", "resp")),
    ("chest-cough", "胸部", "咳嗽,咳痰,气短,喘", None, 15, None, 5, ("resp",)),
    ("child-cough", "胸部", "咳嗽,发热,喘", None, 0, 14, 20, ("peds",)),
    ("head-dizzy", "头部", "头晕,头痛,血压高", None, None, None, 0, ("cardio",)),
    ("child-fever", "全身", "发热,发烧,咳嗽,腹泻", None, 0, 14, 20, ("peds",)),
    ("adult-fever", "全身", "发热,发烧,乏力", None, 15, None, 0, ("resp",)),
    ("skin-rash", "皮肤", "皮疹,瘙痒,湿疹,痘,脱皮", None, None, None, 10, ("derm",)),
    ("child-rash", "皮肤", "皮疹,湿疹", None, 0, 14, 15, ("peds", "derm")),
    ("knee", "下肢", "膝痛,关节痛,扭伤,肿胀", None, None, None, 10, ("ortho",)),
    ("leg-fracture", "下肢", "骨折,外伤,不能行走", None, None, None, 20, ("ortho",)),
    ("arm", "上肢", "关节痛,扭伤,骨折,麻木", None, None, None, 10, ("ortho",)),
    ("back", "腰背部", "腰痛,背痛,腰椎,活动受限", None, None, None, 10, ("ortho",)),
    ("neck", "颈部", "颈痛,颈椎,落枕,手麻", None, None, None, 10, ("ortho",)),
    ("throat", "颈部", "咽痛,嗓子疼,咳嗽", None, None, None, 5, ("resp",)),
    ("edema", "下肢", "水肿,浮肿,气短", None, 40, None, 5, ("cardio",)),
]


async def seed_directory_demo(conn: asyncpg.Connection) -> None:
    """The demo hospital's directory content, after carehub.demo seeded its departments and doctors."""
    now = dt.datetime.now(dt.UTC)
    await conn.execute(
        "INSERT INTO hospital_info (id, name, intro, address, phone, updated_at) VALUES (1, $1, $2, $3, $4, $5)",
        "CareHub 示范医院",
        "CareHub 示范医院是一所集医疗、教学、科研、预防于一体的三级甲等综合医院，设本部与东院区两个院区。",
        "北京市东城区示范路1号", "010-65000000", now,
    )
    await conn.executemany(
        "INSERT INTO hospital_images (sort_order, url, caption) VALUES ($1, $2, $3)",
        [(0, "https://cdn.example.cn/carehub/hospital-front.jpg", "医院正门"),
         (1, "https://cdn.example.cn/carehub/outpatient-hall.jpg", "门诊大厅")],
    )
    await conn.executemany(
        "INSERT INTO directory_settings (name, value, updated_at) VALUES ($1, $2, $3)",
        [("map_url", "https://map.example.cn/carehub", now), ("triage_url", "https://triage.example.cn/carehub", now)],
    )
    await conn.executemany(
        "INSERT INTO campuses (id, name, address, phone, map_url, sort_order) VALUES ($1, $2, $3, $4, $5, $6)",
        _DEMO_CAMPUSES,
    )
    await conn.executemany(
        "INSERT INTO floors (id, campus_id, building, name, floor_level, plan_url) VALUES ($1, $2, $3, $4, $5, '')",
        _DEMO_FLOORS,
    )
    await conn.executemany(
        "UPDATE departments SET floor_id = $2, room = $3 WHERE id = $1",
        [(d, floor, room) for d, (floor, room) in _DEMO_PLACES.items()],
    )
    await _refresh_places(conn, "floor_id IS NOT NULL")
    await conn.execute("UPDATE doctors SET expert = true WHERE title = '主任医师'")
    await conn.execute(
        "INSERT INTO news (id, title, summary, body, cover_url, published_at, hidden, updated_at)"
        " VALUES ('demo-news-1', $1, $2, $3, '', $4, false, $4)",
        "东院区骨科病房启用", "东院区外科楼4层骨科病房正式启用。", "东院区外科楼4层骨科病房正式启用，新增床位40张。",
        now - dt.timedelta(days=3),
    )
    await conn.executemany(
        "INSERT INTO guide_pages (slug, title, body, sort_order, hidden, updated_at)"
        " VALUES ($1, $2, $3, $4, false, $5)",
        [(*page, now) for page in _DEMO_GUIDE],
    )
    await conn.execute(
        "INSERT INTO announcements (id, title, body, starts_at, ends_at, withdrawn, created_at, updated_at)"
        " VALUES ('demo-notice-1', $1, $2, $3, $4, false, $3, $3)",
        "门诊时间调整", "自即日起，本部院区门诊周六上午照常开诊。", now - dt.timedelta(days=1),
        now + dt.timedelta(days=365),
    )
    await conn.executemany(
        "INSERT INTO price_items (code, name, category, unit, price_fen, active, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, true, $6)",
        [(*item, now) for item in _DEMO_PRICES],
    )
    await conn.executemany(
        "INSERT INTO price_changes (code, changed_at, new_name, new_category, new_unit, new_price_fen, new_active)"
        " VALUES ($1, $6, $2, $3, $4, $5, true)",
        [(*item, now) for item in _DEMO_PRICES],
    )
    await conn.executemany(
        "INSERT INTO triage_rules (id, body_part, keywords, sex, min_age, max_age, priority, note, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, '', $8)",
        [(*rule[:7], now) for rule in _DEMO_TRIAGE],
    )
    await conn.executemany(
        "INSERT INTO triage_rule_departments (rule_id, department_id, sort_order) VALUES ($1, $2, $3)",
        [(rule[0], d, i) for rule in _DEMO_TRIAGE for i, d in enumerate(rule[7])],
    )
