"""Smart triage (OUT-1): which departments fit a patient's body part and symptoms. Pure: no I/O."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from carehub.storage.directory.triage import TriageRule

__all__ = ["MAX_RECOMMENDATIONS", "Recommendation", "TriageQuery", "TriageRule", "recommend"]

MAX_RECOMMENDATIONS = 5



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
