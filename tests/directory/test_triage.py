"""Smart triage (OUT-1): a body part and symptoms -> departments, from a rules table admins edit."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from carehub.directory.triage import TriageQuery, TriageRule, recommend

from ..servers import Server
from .helpers import as_admin, audit_actions, error_message

RULES = [
    TriageRule("chest-pain", "胸部", ("胸痛", "心悸"), ("cardio", "resp"), priority=10),
    TriageRule("chest-cough", "胸部", ("咳嗽", "气短"), ("resp",), min_age=15, priority=5),
    TriageRule("child-cough", "胸部", ("咳嗽",), ("peds",), max_age=14, priority=20),
    TriageRule("belly-women", "腹部", ("下腹痛",), ("gyn",), sex="female", priority=10),
    TriageRule("belly", "腹部", ("腹痛", "腹泻"), ("gastro",)),
]

CASES = [
    # (what the patient picked, the departments expected, best first)
    (TriageQuery("胸部", ("胸痛",)), ["cardio", "resp"]),
    (TriageQuery("胸部", ("胸痛伴出汗",)), ["cardio", "resp"]),  # a keyword inside a longer symptom
    (TriageQuery("胸部", ("咳嗽",), age=40), ["resp"]),
    (TriageQuery("胸部", ("咳嗽",), age=6), ["peds"]),
    (TriageQuery("胸部", ("咳嗽",)), []),  # both cough rules need an age
    (TriageQuery("胸部", ("心悸", "咳嗽"), age=40), ["cardio", "resp"]),
    (TriageQuery("腹部", ("下腹痛",), sex="female"), ["gyn", "gastro"]),
    (TriageQuery("腹部", ("下腹痛",), sex="male"), ["gastro"]),
    (TriageQuery("腹部", ("下腹痛",)), ["gastro"]),  # a rule for one sex needs the sex
    (TriageQuery("胸部", (), age=40), ["cardio", "resp"]),  # no symptoms: the body part's rules by priority
    (TriageQuery("头部", ("胸痛",)), []),
]


@pytest.mark.parametrize(("query", "expected"), CASES)
def test_recommendations_follow_the_rules_table(query: TriageQuery, expected: list[str]) -> None:
    """OUT-1: body part, keywords, sex and age range -> departments, ranked."""
    assert [r.department_id for r in recommend(RULES, query)] == expected


def test_more_matched_keywords_rank_a_department_higher_than_a_rules_priority() -> None:
    """OUT-1."""
    rules = [TriageRule("a", "胸部", ("胸痛", "心悸"), ("cardio",)), TriageRule("b", "胸部", ("胸痛",), ("resp",),
                                                                           priority=50)]
    ranked = recommend(rules, TriageQuery("胸部", ("胸痛", "心悸")))
    assert [(r.department_id, r.matched) for r in ranked] == [("cardio", ("胸痛", "心悸")), ("resp", ("胸痛",))]


async def triage(server: Server, body: dict[str, Any]) -> httpx.Response:
    async with server.http() as http:
        return await http.post("/api/v1/triage", json=body)


async def test_the_picker_lists_body_parts_with_their_symptoms_and_the_third_party_link(server: Server) -> None:
    """OUT-1."""
    async with server.http() as http:
        picker = (await http.get("/api/v1/triage")).json()
    parts = {p["name"]: p["symptoms"] for p in picker["body_parts"]}
    assert "胸痛" in parts["胸部"] and "皮疹" in parts["皮肤"]
    assert picker["triage_url"] == "https://triage.example.cn/carehub"


async def test_chest_pain_sends_a_patient_to_cardiology_first(server: Server) -> None:
    """OUT-1, with the demo rules."""
    response = await triage(server, {"body_part": "胸部", "symptoms": ["胸痛"], "sex": "male", "age": 58})
    ranked = response.json()["recommendations"]
    assert [r["department"]["name"] for r in ranked] == ["心血管内科", "呼吸与危重症医学科"]
    assert ranked[0]["department"]["location"] == "门诊楼3层A区" and ranked[0]["matched"] == ["胸痛"]


async def test_a_rule_an_admin_adds_changes_the_recommendation_at_once(server: Server) -> None:
    """OUT-1: admins edit the rules table; the change is audited."""
    rule = {"body_part": "头部", "keywords": ["头晕", "耳鸣"], "departments": ["resp", "cardio"], "priority": 50}
    async with await as_admin(server) as http:
        assert (await http.put("/api/v1/admin/triage/rules/head-tinnitus", json=rule)).status_code == 200
    ranked = (await triage(server, {"body_part": "头部", "symptoms": ["耳鸣"]})).json()["recommendations"]
    assert [r["department"]["id"] for r in ranked] == ["resp", "cardio"]
    assert [e["action"] for e in await audit_actions(server, "triage/")] == ["triage.rule_change"]


async def test_a_deleted_rule_no_longer_recommends_its_departments(server: Server) -> None:
    """OUT-1."""
    async with await as_admin(server) as http:
        assert (await http.delete("/api/v1/admin/triage/rules/skin-rash")).status_code == 200
    ranked = (await triage(server, {"body_part": "皮肤", "symptoms": ["瘙痒"], "age": 30})).json()
    assert ranked["recommendations"] == [] and "导诊台" in ranked["note"]


async def test_a_disabled_department_is_never_recommended(server: Server) -> None:
    """OUT-1, ADM-2."""
    async with await as_admin(server) as http:
        await http.patch("/api/v1/admin/departments/cardio", json={"disabled": True})
    ranked = (await triage(server, {"body_part": "胸部", "symptoms": ["胸痛"]})).json()["recommendations"]
    assert [r["department"]["id"] for r in ranked] == ["resp"]


async def test_a_rule_naming_an_unknown_department_is_refused(server: Server) -> None:
    """OUT-1."""
    rule = {"body_part": "头部", "keywords": ["头痛"], "departments": ["neuro"]}
    async with await as_admin(server) as http:
        response = await http.put("/api/v1/admin/triage/rules/head", json=rule)
    assert response.status_code == 422 and "科室 neuro 不存在" in error_message(response)


async def test_an_unknown_body_part_is_refused_with_the_parts_to_choose_from(server: Server) -> None:
    """OUT-1."""
    response = await triage(server, {"body_part": "尾巴", "symptoms": ["痛"]})
    assert response.status_code == 422 and "胸部" in error_message(response)
