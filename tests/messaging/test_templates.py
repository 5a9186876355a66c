"""Notice templates: every kind renders from its own variables; a bad template is refused when saved (MSG-1..8)."""

from __future__ import annotations

import pytest

from carehub.messaging import CATEGORIES, KINDS
from carehub.messaging import templates as tpl
from carehub.messaging.errors import BadTemplate


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_kinds_default_template_is_valid_and_renders_every_value_it_names(name: str) -> None:
    kind = KINDS[name]
    assert kind.category in CATEGORIES and kind.feature
    template = tpl.check(kind, kind.title, kind.body)  # the defaults pass the same check as an admin's edit
    values = {v: f"<{v}>" for v in kind.variables}
    title, body = tpl.render(template.title, values), tpl.render(template.body, values)
    assert "{" not in title + body and title and body
    used = {v for v in kind.variables if f"<{v}>" in title + body + (kind.link or "")}
    # every variable a kind declares is something a template can show, and the defaults show what matters
    assert used, f"{name}: its default template shows none of its values"
    if kind.link:
        assert kind.link.startswith(("/h5/", "/doctor")), kind.link


def test_a_booking_confirmation_reads_as_a_patient_expects() -> None:
    kind = KINDS["booking.confirmed"]
    values = {"patient": "张*三", "doctor": "李建国", "time": "12月5日 08:30", "room": "心内科1诊室"}
    body = tpl.render(kind.body, values)
    assert body == "张*三，您已成功预约李建国医生12月5日 08:30的号源，请按时到心内科1诊室签到就诊。"


@pytest.mark.parametrize(("title", "body", "says"), [
    ("预约成功", "{nope}您好", "{nope} 不属于「预约成功」"),
    ("预约成功", "{patient:>10}", "不能带格式"),
    ("预约成功", "{patient!r}", "不能带格式"),
    ("预约成功", "{patient.name}", "不是变量名"),
    ("预约成功", "{patient[0]}", "不是变量名"),
    ("预约成功", "{patient", "花括号不成对"),
    ("预约成功", "}", "花括号不成对"),
    ("", "正文", "不能为空"),
    ("预约成功", "长" * 501, "最多 500 字"),
    ("预约成功", "a\x00b", "空字符"),
])
def test_a_template_that_could_fail_when_sent_is_refused_when_saved(title: str, body: str, says: str) -> None:
    with pytest.raises(BadTemplate, match=says.replace("{", r"\{").replace("[", r"\[")):
        tpl.check(KINDS["booking.confirmed"], title, body)


def test_literal_braces_and_missing_values_render_harmlessly() -> None:
    kind = KINDS["booking.confirmed"]
    checked = tpl.check(kind, "预约成功", "{{备注}} {patient} {room}")
    assert tpl.render(checked.body, {"patient": "张*三"}) == "{备注} 张*三 "
