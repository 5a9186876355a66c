"""Smart-triage rules (OUT-1): symptoms at a body part -> departments. The recommender is
:func:`carehub.directory.triage.recommend`."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

import asyncpg

from carehub.errors import Invalid, NotFound

from ._base import DirectoryRepository, Editor

_KEYWORD_SPLIT = re.compile(r"[,，、;；\s]+")


def keywords_of(text: str) -> tuple[str, ...]:
    """Symptom keywords from an admin's list (separated by commas, 、 or spaces), unique, in order."""
    return tuple(dict.fromkeys(k for k in _KEYWORD_SPLIT.split(text) if k))



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


_TRIAGE = "id, body_part, keywords, sex, min_age, max_age, priority, note"


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


class TriageStore(DirectoryRepository):
    """Triage rules with their departments, best first."""

    async def triage_rules(self, body_part: str | None = None) -> list[TriageRule]:
        return await self.db.run(_load_rules, body_part)

    async def triage_rules_json(self) -> list[dict[str, Any]]:
        return [_rule_json(r) for r in await self.triage_rules()]

    async def put_triage_rule(self, editor: Editor, rule: TriageRule) -> None:
        if not rule.keywords:
            raise Invalid("至少填写一个症状关键词 (give at least one keyword)")
        if not rule.departments or len(set(rule.departments)) != len(rule.departments):
            raise Invalid("推荐科室不能为空或重复 (departments must be given once each)")

        async def op(conn: asyncpg.Connection) -> None:
            found = {r["id"] for r in await conn.fetch(
                "SELECT id FROM departments WHERE id = ANY($1::varchar[])", list(rule.departments)
            )}
            missing = [d for d in rule.departments if d not in found]
            if missing:
                raise Invalid(f"科室 {', '.join(missing)} 不存在 (no such departments)")
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
                raise NotFound(f"分诊规则 {rule_id} 不存在 (no triage rule {rule_id})")

        await self._change(editor, "triage.rule_delete", f"triage/{rule_id}", {}, op)
