"""What each kind of directory entry may hold: field checks, table-driven, messages in Chinese."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from carehub.storage.directory.triage import keywords_of

from .errors import DirectoryInvalid

__all__ = ["BODY_PARTS", "FIELDS", "check_id", "clean", "keywords_of"]

#: regions of the body diagram (OUT-1); every triage rule names one of them
BODY_PARTS = ("头部", "颈部", "胸部", "腹部", "腰背部", "盆腔", "上肢", "下肢", "皮肤", "全身")

_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")

_URL = re.compile(r"^https?://[^\s<>\"]+$")




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
