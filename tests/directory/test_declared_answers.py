"""The public directory routes the patient app's pages read answer exactly the shape their OpenAPI
schema (``response=``) declares: the price list (ADM-6) and smart triage (OUT-1). Each answer decodes
as the declared type and encodes back to the same JSON, so no field goes undocumented."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import msgspec

from ..servers import Server


def declared(server: Server, method: str, path: str) -> Any:
    (spec,) = [s for s in server.app.router.specs if (s.method, s.path) == (method, path)]
    assert spec.response is not None, f"{method} {path} declares no answer"
    return spec.response


def same(declared: Any, raw: Any) -> bool:
    """The declared type's view of an answer equals the answer (a time may be spelt ``Z`` or ``+00:00``)."""
    if isinstance(declared, dict) and isinstance(raw, dict):
        return declared.keys() == raw.keys() and all(same(declared[k], raw[k]) for k in raw)
    if isinstance(declared, list) and isinstance(raw, list):
        return len(declared) == len(raw) and all(same(d, r) for d, r in zip(declared, raw, strict=True))
    if isinstance(declared, str) and isinstance(raw, str) and declared != raw:
        try:
            return dt.datetime.fromisoformat(declared) == dt.datetime.fromisoformat(raw)
        except ValueError:
            return False
    return bool(declared == raw)


def exactly(answer: httpx.Response, kind: Any, status: int = 200) -> Any:
    """``answer`` decoded as ``kind``; raises if a field is missing or of another type, fails if one is extra."""
    assert answer.status_code == status, answer.text
    decoded = msgspec.json.decode(answer.content, type=kind)
    assert same(msgspec.to_builtins(decoded), answer.json()), answer.text
    return decoded


async def test_the_price_list_answers_its_declared_shape(server: Server) -> None:
    kind = declared(server, "GET", "/api/v1/prices")
    async with server.http() as http:
        everything = exactly(await http.get("/api/v1/prices"), kind)
        found = exactly(await http.get("/api/v1/prices", params={"q": "血常规"}), kind)
        none = exactly(await http.get("/api/v1/prices", params={"q": "没有这个项目"}), kind)
    assert len(everything.prices) == 20
    assert [(p.code, p.unit, p.price_fen) for p in found.prices] == [("JY001", "项", 2000)]
    assert none.prices == []


async def test_the_triage_picker_and_its_recommendations_answer_their_declared_shapes(server: Server) -> None:
    picker_kind = declared(server, "GET", "/api/v1/triage")
    triage_kind = declared(server, "POST", "/api/v1/triage")
    async with server.http() as http:
        picker = exactly(await http.get("/api/v1/triage"), picker_kind)
        chest = exactly(await http.post("/api/v1/triage", json={"body_part": "胸部", "symptoms": ["胸痛"]}),
                        triage_kind)
        nothing = exactly(await http.post("/api/v1/triage", json={"body_part": "胸部", "symptoms": ["不存在的症状"]}),
                          triage_kind)
    assert "胸部" in [p.name for p in picker.body_parts] and picker.triage_url and picker.note
    assert chest.recommendations[0].department.id == "cardio" and chest.recommendations[0].matched == ["胸痛"]
    assert nothing.recommendations == [] and "未找到匹配的科室" in nothing.note
