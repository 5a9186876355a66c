"""Notice templates: ``{variable}`` placeholders of the kind's variables, checked when saved.

A template is a title and a body in Chinese with ``{name}`` placeholders (``{{`` and ``}}`` for
literal braces). :func:`check` refuses, at save time, what could only fail at send time: an
unknown variable, a format spec or conversion (``{x:>10}``, ``{x!r}``), attribute or index access
(``{x.y}``, ``{x[0]}``), unbalanced braces, an empty or overlong text. :func:`render` then cannot
fail for a checked template: a value the event did not give renders as empty.
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Mapping

from .errors import BadTemplate
from .kinds import NoticeKind

TITLE_MAX = 40
BODY_MAX = 500
_FORMATTER = string.Formatter()


@dataclasses.dataclass(frozen=True)
class Template:
    kind: str
    title: str
    body: str
    #: the provider templates this kind is sent with (None: the channel's default notice template)
    sms_template: str | None = None
    wechat_template: str | None = None
    alipay_template: str | None = None


def default(kind: NoticeKind) -> Template:
    return Template(kind.name, kind.title, kind.body)


def _fields(text: str, kind: NoticeKind, what: str) -> list[str]:
    try:
        parsed = list(_FORMATTER.parse(text))
    except ValueError as err:
        raise BadTemplate(f"{what}的花括号不成对（字面的花括号请写成 {{{{ 或 }}}}）: {err}") from None
    names = []
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if spec or conversion:
            raise BadTemplate(f"{what}中的 {{{field}}} 不能带格式或转换（写成 {{{field.split(':')[0]}}}）")
        if not field or not field.isidentifier():
            raise BadTemplate(f"{what}中的 {{{field}}} 不是变量名（可用：{'、'.join(kind.variables)}）")
        if field not in kind.variables:
            raise BadTemplate(f"{what}中的变量 {{{field}}} 不属于「{kind.label}」（可用：{'、'.join(kind.variables)}）")
        names.append(field)
    return names


def check(kind: NoticeKind, title: str, body: str) -> Template:
    """The template if it can always be rendered for ``kind``; :class:`BadTemplate` says why not."""
    title, body = title.strip(), body.strip()
    if not title or not body:
        raise BadTemplate("标题和内容都不能为空")
    if len(title) > TITLE_MAX or len(body) > BODY_MAX:
        raise BadTemplate(f"标题最多 {TITLE_MAX} 字，内容最多 {BODY_MAX} 字")
    if any("\x00" in text for text in (title, body)):
        raise BadTemplate("模板中不能有空字符")
    _fields(title, kind, "标题")
    _fields(body, kind, "内容")
    return Template(kind.name, title, body)


def render(text: str, values: Mapping[str, object]) -> str:
    """``text`` with its placeholders filled (a missing value renders empty)."""
    return _FORMATTER.vformat(text, (), _Values(values))


class _Values(dict[str, object]):
    def __init__(self, values: Mapping[str, object]) -> None:
        super().__init__({k: "" if v is None else v for k, v in values.items()})

    def __missing__(self, key: str) -> str:
        return ""
