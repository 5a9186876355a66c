"""The hospital's public directory and content (PUB-1..6, OUT-1, GUIDE-1, ADM-5 reading side).

Everything here is public (no sign-in), except marking an announcement read, which counts once
per account. Admins change all of it through :mod:`.content_admin`.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

import msgspec
from quart import request

from carehub.directory import BODY_PARTS, Directory, Editor, TriageQuery

from ..errors import ApiError
from ..routing import RequestContext, RouteDecorator
from .args import client_ip, int_arg

#: what a path may name: department and doctor ids, news and announcement ids, guide slugs, codes
_PATH_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TRIAGE_NOTE = "智能导诊结果仅供参考，不能代替医生诊断；如症状严重请立即前往急诊。"


class TriageRequest(msgspec.Struct, forbid_unknown_fields=True):
    """A patient's pick on the body diagram (OUT-1)."""

    body_part: str
    symptoms: list[str] = msgspec.field(default_factory=list)
    sex: Literal["male", "female"] | None = None
    age: int | None = None


def editor(ctx: RequestContext) -> Editor:
    assert ctx.principal is not None
    return Editor(ctx.principal.account_id, tuple(sorted(ctx.principal.roles)), client_ip())


def path_id(value: str, what: str) -> str:
    """A path parameter that cannot name anything stored is simply not found."""
    if not _PATH_ID.match(value):
        raise ApiError(404, "not_found", f"{what} {value[:64]!r} 不存在 (not found)")
    return value


def _flag(name: str) -> bool:
    raw = request.args.get(name, "").lower()
    if raw not in ("", "0", "1", "true", "false"):
        raise ApiError(400, "bad_request", f"query parameter {name!r} must be 1 or 0")
    return raw in ("1", "true")


def _text_arg(name: str, max_length: int = 100) -> str | None:
    raw = (request.args.get(name) or "").strip()
    if not raw:
        return None
    if len(raw) > max_length or "\x00" in raw:
        raise ApiError(400, "bad_request", f"query parameter {name!r} is too long or has a NUL character")
    return raw


def _triage_query(body: TriageRequest) -> TriageQuery:
    if body.body_part not in BODY_PARTS:
        raise ApiError(422, "invalid", f"请选择身体部位：{'、'.join(BODY_PARTS)} (unknown body part)")
    symptoms = [s.strip() for s in body.symptoms if s.strip()]
    if len(symptoms) > 20 or any(len(s) > 50 or "\x00" in s for s in symptoms):
        raise ApiError(422, "invalid", "症状最多 20 个，每个不超过 50 字 (at most 20 symptoms of 50 characters)")
    if body.age is not None and not 0 <= body.age <= 150:
        raise ApiError(422, "invalid", "年龄必须在 0 到 150 岁之间 (age out of range)")
    return TriageQuery(body.body_part, tuple(symptoms), body.sex, body.age)


class DepartmentView(msgspec.Struct):
    """A department as the patient app lists it (``GET /api/v1/departments``)."""

    id: str
    name: str
    campus: str | None
    location: str | None
    floor_id: str | None
    room: str | None
    intro: str | None
    phone: str | None
    sort_order: int
    disabled: bool
    campus_id: str | None
    building: str | None
    floor: str | None
    level: int | None


class DepartmentsView(msgspec.Struct):
    departments: list[DepartmentView]


class ImageView(msgspec.Struct):
    url: str
    caption: str


class CampusView(msgspec.Struct):
    id: str
    name: str
    address: str
    phone: str
    map_url: str


class HospitalView(msgspec.Struct):
    """The hospital's introduction (``GET /api/v1/hospital``, PUB-1, PUB-6)."""

    name: str
    intro: str
    address: str
    phone: str
    updated_at: dt.datetime | None
    images: list[ImageView]
    campuses: list[CampusView]
    #: directions to the hospital (PUB-6); empty when not set
    map_url: str


class FloorDepartmentView(msgspec.Struct):
    id: str
    name: str
    room: str


class FloorView(msgspec.Struct):
    id: str
    building: str
    name: str
    level: int
    plan_url: str
    departments: list[FloorDepartmentView]


class CampusFloorsView(msgspec.Struct):
    id: str
    name: str
    address: str
    phone: str
    map_url: str
    sort_order: int
    floors: list[FloorView]


class CampusesView(msgspec.Struct):
    """Campuses, floors and the departments on each floor (PUB-2)."""

    campuses: list[CampusFloorsView]


class DoctorView(msgspec.Struct):
    id: str
    name: str
    department_id: str
    department: str
    title: str
    specialty: str
    intro: str
    photo_url: str
    expert: bool
    disabled: bool


class DoctorsView(msgspec.Struct):
    doctors: list[DoctorView]


class NewsSummaryView(msgspec.Struct):
    id: str
    title: str
    summary: str
    cover_url: str
    published_at: dt.datetime


class NewsListView(msgspec.Struct):
    news: list[NewsSummaryView]


class NewsItemView(msgspec.Struct):
    id: str
    title: str
    summary: str
    body: str
    cover_url: str
    published_at: dt.datetime


class GuideSummaryView(msgspec.Struct):
    slug: str
    title: str
    sort_order: int
    updated_at: dt.datetime


class GuideView(msgspec.Struct):
    pages: list[GuideSummaryView]


class GuidePageView(msgspec.Struct):
    slug: str
    title: str
    body: str
    updated_at: dt.datetime


class AnnouncementView(msgspec.Struct):
    id: str
    title: str
    body: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    #: whether the signed-in caller marked it read (absent for an anonymous caller)
    read: bool | None = None


class AnnouncementsView(msgspec.Struct):
    announcements: list[AnnouncementView]


class AnnouncementReadView(msgspec.Struct):
    id: str
    read: bool
    first_time: bool


class PriceView(msgspec.Struct):
    """A price list item (ADM-6): the price in fen (0.01 yuan)."""

    code: str
    name: str
    category: str
    unit: str
    price_fen: int
    updated_at: dt.datetime


class PricesView(msgspec.Struct):
    prices: list[PriceView]


class BodyPartView(msgspec.Struct):
    name: str
    symptoms: list[str]


class TriagePickerView(msgspec.Struct):
    """The body diagram's parts with their symptoms, the third-party triage link (empty when not set)
    and the note that triage is no diagnosis (OUT-1)."""

    body_parts: list[BodyPartView]
    triage_url: str
    note: str


class TriageDepartmentView(msgspec.Struct):
    id: str
    name: str
    campus: str | None
    location: str | None


class RecommendationView(msgspec.Struct):
    department: TriageDepartmentView
    #: the patient's symptoms this department's rules matched
    matched: list[str]


class TriageView(msgspec.Struct):
    """Departments for a body part and symptoms, best first (OUT-1)."""

    recommendations: list[RecommendationView]
    triage_url: str
    note: str


def register(r: RouteDecorator, *, directory: Directory) -> None:
    @r("GET", "/api/v1/hospital", summary="Hospital introduction, images, campuses, map link (PUB-1, PUB-6)",
       permission=None, tag="directory", response=HospitalView)
    async def hospital(ctx: RequestContext) -> Any:
        return await directory.hospital.hospital()

    @r("GET", "/api/v1/campuses", summary="Campuses, floors and the departments on each floor (PUB-2)",
       permission=None, tag="directory", response=CampusesView)
    async def campuses(ctx: RequestContext) -> Any:
        return {"campuses": await directory.hospital.campuses()}

    @r("GET", "/api/v1/departments", summary="Departments of the hospital and where they are (PUB-2)",
       permission=None, tag="directory", response=DepartmentsView)
    async def departments(ctx: RequestContext) -> Any:
        return {"departments": await directory.departments.departments()}

    @r("GET", "/api/v1/departments/<department_id>", summary="A department, where it is and its doctors (PUB-2)",
       permission=None, tag="directory")
    async def department(ctx: RequestContext, department_id: str) -> Any:
        return await directory.departments.department(path_id(department_id, "科室"))

    @r("GET", "/api/v1/doctors", summary="Doctors, optionally by department or experts only (PUB-4)",
       permission=None, tag="directory", query=("department", "expert"), response=DoctorsView)
    async def doctors(ctx: RequestContext) -> Any:
        found = await directory.doctors.doctors(
            department=_text_arg("department", 32), expert_only=_flag("expert")
        )
        return {"doctors": found}

    @r("GET", "/api/v1/doctors/<doctor_id>", summary="A doctor's expert profile (PUB-4)", permission=None,
       tag="directory", response=DoctorView)
    async def doctor(ctx: RequestContext, doctor_id: str) -> Any:
        return await directory.doctors.doctor(path_id(doctor_id, "医生"))

    @r("GET", "/api/v1/news", summary="Hospital news, newest first (PUB-3)", permission=None, tag="directory",
       query=("limit", "offset"), response=NewsListView)
    async def news(ctx: RequestContext) -> Any:
        items = await directory.news.news(
            now=dt.datetime.now(dt.UTC), limit=int_arg("limit", 20, 1, 100), offset=int_arg("offset", 0, 0, 10**6)
        )
        return {"news": [{k: v for k, v in item.items() if k != "hidden"} for item in items]}

    @r("GET", "/api/v1/news/<news_id>", summary="One news article (PUB-3)", permission=None, tag="directory",
       response=NewsItemView)
    async def news_item(ctx: RequestContext, news_id: str) -> Any:
        return await directory.news.news_item(path_id(news_id, "新闻"), now=dt.datetime.now(dt.UTC))

    @r("GET", "/api/v1/guide", summary="Visit guide pages (PUB-5, GUIDE-1)", permission=None, tag="directory",
       response=GuideView)
    async def guide(ctx: RequestContext) -> Any:
        pages = await directory.guide.guide()
        return {"pages": [{k: v for k, v in page.items() if k != "hidden"} for page in pages]}

    @r("GET", "/api/v1/guide/<slug>", summary="One visit guide page (PUB-5, GUIDE-1)", permission=None,
       tag="directory", response=GuidePageView)
    async def guide_page(ctx: RequestContext, slug: str) -> Any:
        return await directory.guide.guide_page(path_id(slug, "就医指南"))

    @r("GET", "/api/v1/announcements", summary="Announcements showing now; 'read' for a signed-in caller (ADM-5)",
       permission=None, tag="directory", response=AnnouncementsView)
    async def announcements(ctx: RequestContext) -> Any:
        reader = ctx.principal.account_id if ctx.principal is not None else None
        items = await directory.announcements.current_announcements(now=dt.datetime.now(dt.UTC), reader=reader)
        return {"announcements": items}

    @r("POST", "/api/v1/announcements/<announcement_id>/read",
       summary="Mark an announcement read (counted once per account, ADM-5)", permission="account.self",
       tag="directory", response=AnnouncementReadView)
    async def read_announcement(ctx: RequestContext, announcement_id: str) -> Any:
        assert ctx.principal is not None
        first = await directory.announcements.mark_read(
            path_id(announcement_id, "公告"), ctx.principal.account_id, now=dt.datetime.now(dt.UTC)
        )
        return {"id": announcement_id, "read": True, "first_time": first}

    @r("GET", "/api/v1/prices", summary="The price list, searchable by name or code (ADM-6)", permission=None,
       tag="directory", query=("q", "category"), response=PricesView)
    async def prices(ctx: RequestContext) -> Any:
        items = await directory.prices.prices(search=_text_arg("q"), category=_text_arg("category", 50))
        return {"prices": [{k: v for k, v in item.items() if k != "active"} for item in items]}

    @r("GET", "/api/v1/triage", summary="Smart triage: body parts and their symptoms, third-party link (OUT-1)",
       permission=None, tag="directory", response=TriagePickerView)
    async def triage_picker(ctx: RequestContext) -> Any:
        symptoms: dict[str, dict[str, None]] = {}
        for rule in await directory.triage.triage_rules():
            symptoms.setdefault(rule.body_part, {}).update(dict.fromkeys(rule.keywords))
        return {
            "body_parts": [{"name": part, "symptoms": list(symptoms[part])} for part in BODY_PARTS if part in symptoms],
            "triage_url": (await directory.hospital.settings())["triage_url"],
            "note": TRIAGE_NOTE,
        }

    @r("POST", "/api/v1/triage", summary="Smart triage: departments for a body part and symptoms (OUT-1)",
       permission=None, body=TriageRequest, tag="directory", response=TriageView)
    async def triage(ctx: RequestContext, body: TriageRequest) -> Any:
        ranked = await directory.recommend(_triage_query(body))
        return {
            "recommendations": [
                {"department": {k: place[k] for k in ("id", "name", "campus", "location")},
                 "matched": list(rec.matched)}
                for place, rec in ranked
            ],
            "triage_url": (await directory.hospital.settings())["triage_url"],
            "note": TRIAGE_NOTE if ranked else "未找到匹配的科室，请咨询导诊台或使用第三方智能导诊。",
        }
