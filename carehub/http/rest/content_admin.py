"""Administration of the directory and hospital content (ADM-2..6, OUT-1 rules, PUB-1..6 content).

Every change is audited in the same transaction as the change itself (carehub/storage/directory/).
Doctors' accounts are created through ``Identity.create_accounts``, like the accounts admin route:
each new doctor gets a generated password and a TOTP enrolment link, shown once.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import secrets
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec
import pyotp
from quart import request

from carehub.directory import (
    BODY_PARTS,
    SETTINGS,
    Directory,
    DirectoryInvalid,
    ImportRefused,
    TriageRule,
    check_id,
    clean,
    keywords_of,
)
from carehub.identity import Identity, IdentityInvalid, LoginTaken, NewAccount, normalise_phone, password_problem
from carehub.identity.signatures import Signatures

from ..errors import ApiError
from ..routing import RequestContext, RouteDecorator, json_response
from .args import int_arg
from .directory import CampusesView, DepartmentView, HospitalView, editor, path_id

UNSET = msgspec.UNSET
Unset = msgspec.UnsetType

MAX_IMPORT_LINES = 1000
_LOGIN = re.compile(r"^[A-Za-z0-9_.@+-]{3,64}$")


class ImageBody(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    caption: str = ""


class HospitalBody(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    intro: str
    address: str
    phone: str
    images: list[ImageBody] = msgspec.field(default_factory=list)


class SettingsBody(msgspec.Struct, forbid_unknown_fields=True):
    #: directions to the hospital (PUB-6); "" removes the link
    map_url: str | Unset = UNSET
    #: the third-party smart triage service (OUT-1); "" removes the link
    triage_url: str | Unset = UNSET


class FloorBody(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    building: str
    name: str
    level: int
    plan_url: str = ""


class CampusBody(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    address: str
    phone: str = ""
    map_url: str = ""
    sort_order: int = 0
    floors: list[FloorBody] = msgspec.field(default_factory=list)


class NewDepartment(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    name: str
    floor_id: str | None = None
    room: str = ""
    intro: str = ""
    phone: str = ""
    sort_order: int = 0


class DepartmentChange(msgspec.Struct, forbid_unknown_fields=True):
    name: str | Unset = UNSET
    floor_id: str | Unset | None = UNSET
    room: str | Unset = UNSET
    intro: str | Unset = UNSET
    phone: str | Unset = UNSET
    sort_order: int | Unset = UNSET
    disabled: bool | Unset = UNSET


class NewDoctor(msgspec.Struct, forbid_unknown_fields=True):
    login: str
    name: str
    department_id: str
    title: str
    specialty: str
    intro: str = ""
    photo_url: str = ""
    expert: bool = False
    phone: str | None = None


class DoctorChange(msgspec.Struct, forbid_unknown_fields=True):
    department_id: str | Unset = UNSET
    title: str | Unset = UNSET
    specialty: str | Unset = UNSET
    intro: str | Unset = UNSET
    photo_url: str | Unset = UNSET
    expert: bool | Unset = UNSET
    #: a disabled doctor is left out of the directory; the account itself is disabled elsewhere
    disabled: bool | Unset = UNSET


class NewsBody(msgspec.Struct, forbid_unknown_fields=True):
    title: str
    body: str
    summary: str = ""
    cover_url: str = ""
    #: shown from this time on; now when left out
    published_at: dt.datetime | None = None
    hidden: bool = False


class NewsChange(msgspec.Struct, forbid_unknown_fields=True):
    title: str | Unset = UNSET
    body: str | Unset = UNSET
    summary: str | Unset = UNSET
    cover_url: str | Unset = UNSET
    published_at: dt.datetime | Unset = UNSET
    hidden: bool | Unset = UNSET


class GuideBody(msgspec.Struct, forbid_unknown_fields=True):
    title: str
    body: str
    sort_order: int = 0
    hidden: bool = False


class AnnouncementBody(msgspec.Struct, forbid_unknown_fields=True):
    title: str
    body: str
    starts_at: dt.datetime
    ends_at: dt.datetime


class AnnouncementChange(msgspec.Struct, forbid_unknown_fields=True):
    title: str | Unset = UNSET
    body: str | Unset = UNSET
    starts_at: dt.datetime | Unset = UNSET
    ends_at: dt.datetime | Unset = UNSET
    withdrawn: bool | Unset = UNSET


class PriceBody(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    unit: str
    #: in fen (0.01 yuan)
    price_fen: int
    category: str = ""
    #: False takes the item off the public price list (its history stays)
    active: bool = True


class TriageRuleBody(msgspec.Struct, forbid_unknown_fields=True):
    body_part: str
    keywords: list[str]
    #: recommended departments, best first
    departments: list[str]
    sex: Literal["male", "female"] | None = None
    min_age: int | None = None
    max_age: int | None = None
    priority: int = 0
    note: str = ""


# ---- answers (OpenAPI response schemas of the routes the admin console uses) ---------------------


class SettingsView(msgspec.Struct):
    map_url: str
    triage_url: str


class SlugView(msgspec.Struct):
    slug: str


class DeletedView(msgspec.Struct):
    deleted: str


class AdminDoctorView(msgspec.Struct):
    id: str
    name: str
    department_id: str
    department: str
    title: str
    specialty: str
    intro: str
    photo_url: str
    expert: bool
    #: left out of the directory (the doctor or their account is disabled)
    disabled: bool


class AdminDirectoryView(msgspec.Struct):
    departments: list[DepartmentView]
    doctors: list[AdminDoctorView]


class CreatedView(msgspec.Struct):
    id: str


class ChangedView(msgspec.Struct):
    id: str
    changed: list[str]


class NewDoctorView(msgspec.Struct):
    id: str
    login: str
    name: str
    #: the first password and the TOTP enrolment link: shown once
    password: str
    totp_enrolment: str


class ImportLineView(msgspec.Struct):
    line: int
    message: str


class ImportedDoctorsView(msgspec.Struct):
    imported: int
    doctors: list[NewDoctorView]
    #: lines left out (skip_invalid=1) and why
    skipped: list[ImportLineView]


class AdminAnnouncementView(msgspec.Struct):
    id: str
    title: str
    body: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    withdrawn: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    #: accounts that marked it read
    read_count: int
    #: not withdrawn and within its period now
    showing: bool


class AdminAnnouncementsView(msgspec.Struct):
    announcements: list[AdminAnnouncementView]


class PriceChangeView(msgspec.Struct):
    id: int
    code: str
    changed_at: dt.datetime
    changed_by: str | None
    changed_by_name: str | None
    old_name: str | None
    new_name: str
    old_category: str | None
    new_category: str
    old_unit: str | None
    new_unit: str
    old_price_fen: int | None
    new_price_fen: int
    old_active: bool | None
    new_active: bool


class AdminPriceView(msgspec.Struct):
    code: str
    name: str
    category: str
    unit: str
    price_fen: int
    #: on the public price list
    active: bool
    updated_at: dt.datetime


class AdminPricesView(msgspec.Struct):
    prices: list[AdminPriceView]


class PriceHistoryView(msgspec.Struct):
    changes: list[PriceChangeView]


class PriceSetView(msgspec.Struct):
    code: str
    #: False: the item already had these values
    changed: bool


class TriageRuleView(msgspec.Struct):
    id: str
    body_part: str
    keywords: list[str]
    sex: str | None
    min_age: int | None
    max_age: int | None
    priority: int
    note: str
    departments: list[str]


class TriageRulesView(msgspec.Struct):
    rules: list[TriageRuleView]
    body_parts: list[str]


class AdminNewsItemView(msgspec.Struct):
    id: str
    title: str
    summary: str
    cover_url: str
    published_at: dt.datetime
    hidden: bool


class AdminNewsArticleView(msgspec.Struct):
    id: str
    title: str
    summary: str
    body: str
    cover_url: str
    published_at: dt.datetime
    hidden: bool


class AdminNewsView(msgspec.Struct):
    news: list[AdminNewsItemView]


class AdminGuidePageView(msgspec.Struct):
    slug: str
    title: str
    sort_order: int
    hidden: bool
    updated_at: dt.datetime


class AdminGuideArticleView(msgspec.Struct):
    slug: str
    title: str
    body: str
    sort_order: int
    hidden: bool
    updated_at: dt.datetime


class AdminGuideView(msgspec.Struct):
    pages: list[AdminGuidePageView]


def _given(body: msgspec.Struct) -> dict[str, Any]:
    """The fields a partial change sets."""
    return {name: value for name, value in msgspec.structs.asdict(body).items() if value is not UNSET}


def _aware(at: dt.datetime | None) -> dt.datetime | None:
    if at is not None and at.tzinfo is None:
        raise ApiError(422, "invalid", "时间必须带时区，例如 2025-01-01T08:00:00+08:00 (times need a timezone)")
    return at


def _strong_password(login: str) -> str:
    """A generated first password that passes the staff password rule."""
    while True:
        candidate = secrets.token_urlsafe(12) + "!"
        if password_problem(candidate, login) is None:
            return candidate


# ---- doctors: one, or many from a CSV file (ADM-3) ------------------------------------------------

#: CSV columns, by the names admins may use in the header row
COLUMNS = {
    "login": ("login", "账号", "工号"),
    "name": ("name", "姓名"),
    "department": ("department", "department_id", "科室", "科室编号"),
    "title": ("title", "职称"),
    "specialty": ("specialty", "擅长", "专长"),
    "intro": ("intro", "简介"),
    "photo_url": ("photo_url", "照片"),
    "expert": ("expert", "专家"),
    "phone": ("phone", "手机", "手机号"),
}
REQUIRED_COLUMNS = ("login", "name", "department", "title", "specialty")
_YES = {"是": True, "否": False, "1": True, "0": False, "true": True, "false": False, "": False}


def _decode(raw: bytes) -> str:
    # spreadsheets in China save CSV as GB18030/GBK unless told otherwise
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ImportRefused("文件编码无法识别，请保存为 UTF-8 或 GBK 编码的 CSV (unknown encoding)")


def _read_csv(text: str) -> tuple[dict[str, int], list[tuple[int, list[str]]]]:
    """The column of each field and the data rows with their line numbers (the header is line 1)."""
    if "\x00" in text:
        raise ImportRefused("文件含有不允许的字符，请上传 CSV 文本文件 (NUL character)")
    reader = csv.reader(io.StringIO(text))
    rows: list[tuple[int, list[str]]] = []
    try:
        for cells in reader:
            if any(c.strip() for c in cells):
                rows.append((reader.line_num, [c.strip() for c in cells]))
    except csv.Error as err:
        raise ImportRefused(f"第 {reader.line_num} 行不是合法的 CSV：{err}") from None
    if not rows:
        raise ImportRefused("文件为空：第一行应为表头，例如 账号,姓名,科室,职称,擅长")
    header_line, header = rows[0]
    aliases = {alias.lower(): field for field, names in COLUMNS.items() for alias in names}
    columns: dict[str, int] = {}
    problems = []
    for i, name in enumerate(header):
        field = aliases.get(name.lower())
        if field is None:
            problems.append(f"未知的列“{name[:30]}”")
        elif field in columns:
            problems.append(f"列“{name[:30]}”重复")
        else:
            columns[field] = i
    missing = [COLUMNS[f][1] for f in REQUIRED_COLUMNS if f not in columns]
    if missing:
        problems.append(f"缺少列：{'、'.join(missing)}")
    if problems:
        raise ImportRefused(f"第 {header_line} 行（表头）：{'；'.join(problems)}", [(header_line, "；".join(problems))])
    if len(rows) - 1 > MAX_IMPORT_LINES:
        raise ImportRefused(f"一次最多导入 {MAX_IMPORT_LINES} 名医生 (too many lines)")
    return columns, rows[1:]


async def _check_doctors(
    identity: Identity, directory: Directory, entries: Sequence[tuple[int, Mapping[str, str | bool | None]]]
) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Check each new doctor (line number, fields); returns the cleaned entries and the errors by line."""
    departments = await directory.departments.departments(include_disabled=True)
    by_id = {d["id"]: d for d in departments}
    by_name = {d["name"]: d for d in departments}
    logins = [str(e["login"]) for _, e in entries if _LOGIN.match(str(e["login"]))]
    taken = await identity.accounts.taken_logins(logins)
    first_line: dict[str, int] = {}
    phones: dict[str, int] = {}
    cleaned: list[dict[str, Any]] = []
    errors: list[tuple[int, str]] = []
    for line, e in entries:
        problems: list[str] = []
        login, name = str(e["login"] or ""), str(e["name"] or "").strip()
        if not _LOGIN.match(login):
            problems.append(f"账号“{login[:64]}”应为 3-64 位字母、数字或 _.@+-")
        elif login in first_line:
            problems.append(f"账号 {login} 与第 {first_line[login]} 行重复")
        elif login in taken:
            problems.append(f"账号 {login} 已被使用")
        first_line.setdefault(login, line)
        if not name or len(name) > 100 or "\x00" in name:
            problems.append("姓名不能为空且不超过 100 字")
        department_key = str(e["department"] or "")
        department = by_id.get(department_key) or by_name.get(department_key)
        if department is None:
            problems.append(f"科室“{department_key[:32]}”不存在")
        elif department["disabled"]:
            problems.append(f"科室“{department['name']}”已停用")
        fields: dict[str, Any] = {}
        try:
            fields = clean("doctor", {
                "title": e["title"] or "", "specialty": e["specialty"] or "", "intro": e.get("intro") or "",
                "photo_url": e.get("photo_url") or "",
            })
        except DirectoryInvalid as err:  # say it for this line, keep checking the others
            problems.append(err.message.split(" (")[0])
        expert = e.get("expert")
        if not isinstance(expert, bool):
            problems.append("“专家”一列应填 是 或 否")
        phone = e.get("phone") or None
        if phone is not None:
            try:
                phone = normalise_phone(str(phone))
            except IdentityInvalid:
                problems.append(f"手机号 {str(phone)[:20]} 格式不正确")
            else:
                if phone in phones:
                    problems.append(f"手机号与第 {phones[phone]} 行重复")
                phones.setdefault(phone, line)
                index = identity.keyring.blind_index(phone, field="accounts.phone")
                if await identity.accounts.by_phone(index) is not None:
                    problems.append("手机号已被其他账号使用")
        if problems:
            errors.append((line, "；".join(problems)))
            continue
        assert department is not None
        cleaned.append({**fields, "login": login, "name": name, "department_id": department["id"],
                        "expert": expert, "phone": phone})
    return cleaned, errors


async def _create_doctors(
    ctx: RequestContext, identity: Identity, directory: Directory, signatures: Signatures,
    doctors: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Accounts (with generated passwords and TOTP) and directory entries for checked doctors."""
    specs = []
    shown: list[dict[str, Any]] = []
    for d in doctors:
        password = _strong_password(d["login"])
        secret = pyotp.random_base32()
        specs.append(NewAccount(d["login"], d["name"], ["doctor"], password, phone=d["phone"], totp_secret=secret))
        shown.append({"login": d["login"], "name": d["name"], "password": password,
                      "totp_enrolment": pyotp.TOTP(secret).provisioning_uri(name=d["login"], issuer_name="CareHub")})
    try:
        ids = await identity.create_accounts(specs)
    except LoginTaken as err:
        raise LoginTaken(f"账号或手机号已被使用 ({err})") from None
    await directory.doctors.add_doctors(editor(ctx), list(zip(ids, doctors, strict=True)))
    for account_id in ids:
        await signatures.issue_key(account_id)
    return [{"id": account_id, **s} for account_id, s in zip(ids, shown, strict=True)]


def _import_refused(err: ImportRefused, *, valid: int = 0) -> Any:
    """422 with the errors by line and how many lines were fine (``valid``: what skip_invalid would import)."""
    lines = [{"line": line, "message": f"第 {line} 行：{message}"} for line, message in err.lines]
    return json_response({"error": {"code": "invalid", "message": err.message, "lines": lines, "valid": valid}}, 422)


# ---- routes -------------------------------------------------------------------------------------


def register(r: RouteDecorator, *, directory: Directory, identity: Identity, signatures: Signatures) -> None:
    @r("PUT", "/api/v1/admin/hospital", summary="Set the hospital introduction and images (ADM-4, PUB-1)",
       permission="admin.directory", body=HospitalBody, tag="admin-directory", response=HospitalView)
    async def put_hospital(ctx: RequestContext, body: HospitalBody) -> Any:
        if len(body.images) > 30:
            raise ApiError(422, "invalid", "图片最多 30 张 (at most 30 images)")
        info = clean("hospital", {"name": body.name, "intro": body.intro, "address": body.address,
                                  "phone": body.phone})
        images = [clean("image", {"url": i.url, "caption": i.caption}) for i in body.images]
        await directory.hospital.put_hospital(editor(ctx), info, images)
        return await directory.hospital.hospital()

    @r("PUT", "/api/v1/admin/settings", summary="Set the map link (PUB-6) and the third-party triage link (OUT-1)",
       permission="admin.directory", body=SettingsBody, tag="admin-directory", response=SettingsView)
    async def put_settings(ctx: RequestContext, body: SettingsBody) -> Any:
        values = clean("settings", _given(body))
        assert set(values) <= set(SETTINGS)
        return await directory.hospital.put_settings(editor(ctx), values)

    @r("PUT", "/api/v1/admin/campuses/<campus_id>", summary="Create or replace a campus with its floors (PUB-2)",
       permission="admin.directory", body=CampusBody, tag="admin-directory", response=CampusesView)
    async def put_campus(ctx: RequestContext, body: CampusBody, campus_id: str) -> Any:
        if len(body.floors) > 200:
            raise ApiError(422, "invalid", "一个院区最多 200 个楼层 (at most 200 floors)")
        campus_id = check_id(campus_id, "院区编号")
        fields = _given(body)
        floors = [clean("floor", msgspec.structs.asdict(f)) for f in body.floors]
        del fields["floors"]
        await directory.hospital.put_campus(editor(ctx), campus_id, clean("campus", fields), floors)
        return {"campuses": await directory.hospital.campuses()}

    @r("GET", "/api/v1/admin/directory", summary="All departments and doctors, disabled ones too (ADM-2, ADM-3)",
       permission="admin.directory", tag="admin-directory", response=AdminDirectoryView)
    async def admin_directory(ctx: RequestContext) -> Any:
        return {"departments": await directory.departments.departments(include_disabled=True),
                "doctors": await directory.doctors.doctors(include_disabled=True)}

    @r("POST", "/api/v1/admin/departments", summary="Create a department (ADM-2)", permission="admin.directory",
       body=NewDepartment, tag="admin-directory", response=CreatedView, status=201)
    async def create_department(ctx: RequestContext, body: NewDepartment) -> Any:
        department = clean("department", msgspec.structs.asdict(body))
        await directory.departments.create_department(editor(ctx), department)
        return json_response({"id": department["id"]}, 201)

    @r("PATCH", "/api/v1/admin/departments/<department_id>",
       summary="Change a department: name, place, introduction, or disable it (ADM-2)",
       permission="admin.directory", body=DepartmentChange, tag="admin-directory", response=ChangedView)
    async def change_department(ctx: RequestContext, body: DepartmentChange, department_id: str) -> Any:
        changes = clean("department", _given(body))
        await directory.departments.change_department(
            editor(ctx), path_id(department_id, "科室"), changes
        )
        return {"id": department_id, "changed": sorted(changes)}

    @r("POST", "/api/v1/admin/doctors", summary="Create a doctor: account (password, TOTP) and profile (ADM-3)",
       permission="admin.directory", body=NewDoctor, tag="admin-directory", response=NewDoctorView, status=201)
    async def create_doctor(ctx: RequestContext, body: NewDoctor) -> Any:
        fields = msgspec.structs.asdict(body)
        fields["department"] = fields.pop("department_id")
        cleaned, errors = await _check_doctors(identity, directory, [(1, fields)])
        if errors:
            raise ApiError(422, "invalid", errors[0][1])
        created = await _create_doctors(ctx, identity, directory, signatures, cleaned)
        return json_response(created[0], 201)

    @r("PATCH", "/api/v1/admin/doctors/<doctor_id>",
       summary="Change a doctor's department or profile, or disable them in the directory (ADM-3)",
       permission="admin.directory", body=DoctorChange, tag="admin-directory", response=ChangedView)
    async def change_doctor(ctx: RequestContext, body: DoctorChange, doctor_id: str) -> Any:
        changes = clean("doctor", _given(body))
        await directory.doctors.change_doctor(editor(ctx), path_id(doctor_id, "医生"), changes)
        return {"id": doctor_id, "changed": sorted(changes)}

    @r("POST", "/api/v1/admin/doctors/import",
       summary="Import doctors from a CSV file: all or none (errors by line), or skip_invalid=1: the good lines",
       permission="admin.directory", tag="admin-directory", query=("skip_invalid",), response=ImportedDoctorsView,
       status=201)
    async def import_doctors(ctx: RequestContext) -> Any:
        skip_invalid = request.args.get("skip_invalid", "") in ("1", "true")
        raw = await request.get_data(cache=True)
        assert isinstance(raw, bytes)
        cleaned: list[dict[str, Any]] = []
        errors: list[tuple[int, str]] = []
        try:
            columns, rows = _read_csv(_decode(raw))
            entries = []
            for line, cells in rows:
                fields: dict[str, Any] = {f: (cells[i] if i < len(cells) else "") for f, i in columns.items()}
                fields["expert"] = _YES.get(str(fields.get("expert", "")).lower(), None)
                entries.append((line, fields))
            cleaned, errors = await _check_doctors(identity, directory, entries)
            if errors and not skip_invalid:
                raise ImportRefused(
                    f"导入失败：{len(errors)} 行有错误，未导入任何医生；请修改后重新上传，"
                    f"或跳过错误行导入其余 {len(cleaned)} 行",
                    errors,
                )
            if not cleaned:
                raise ImportRefused(f"没有可导入的行：{len(errors)} 行都有错误", errors)
        except ImportRefused as err:
            return _import_refused(err, valid=len(cleaned))
        created = await _create_doctors(ctx, identity, directory, signatures, cleaned)
        skipped = [{"line": line, "message": f"第 {line} 行：{message}"} for line, message in errors]
        return json_response({"imported": len(created), "doctors": created, "skipped": skipped}, 201)

    @r("GET", "/api/v1/admin/news", summary="All news, hidden and scheduled too (PUB-3)",
       permission="admin.directory", tag="admin-directory", query=("limit", "offset"), response=AdminNewsView)
    async def admin_news(ctx: RequestContext) -> Any:
        items = await directory.news.news(
            now=dt.datetime.now(dt.UTC), limit=int_arg("limit", 100, 1, 1000),
            offset=int_arg("offset", 0, 0, 10**6), everything=True,
        )
        return {"news": items}

    @r("GET", "/api/v1/admin/news/<news_id>", summary="One news article with its body, hidden or scheduled too (PUB-3)",
       permission="admin.directory", tag="admin-directory", response=AdminNewsArticleView)
    async def admin_news_item(ctx: RequestContext, news_id: str) -> Any:
        return await directory.news.news_item(path_id(news_id, "新闻"), now=dt.datetime.now(dt.UTC), everything=True)

    @r("POST", "/api/v1/admin/news", summary="Publish a news article (PUB-3)", permission="admin.directory",
       body=NewsBody, tag="admin-directory", response=CreatedView, status=201)
    async def create_news(ctx: RequestContext, body: NewsBody) -> Any:
        item = clean("news", msgspec.structs.asdict(body))
        item["published_at"] = _aware(body.published_at) or dt.datetime.now(dt.UTC)
        news_id = await directory.news.create_news(editor(ctx), item)
        return json_response({"id": news_id}, 201)

    @r("PATCH", "/api/v1/admin/news/<news_id>", summary="Change or hide a news article (PUB-3)",
       permission="admin.directory", body=NewsChange, tag="admin-directory", response=ChangedView)
    async def change_news(ctx: RequestContext, body: NewsChange, news_id: str) -> Any:
        changes = clean("news", _given(body))
        if "published_at" in changes:
            _aware(changes["published_at"])
        await directory.news.change_news(editor(ctx), path_id(news_id, "新闻"), changes)
        return {"id": news_id, "changed": sorted(changes)}

    @r("GET", "/api/v1/admin/guide", summary="All visit guide pages, hidden ones too (PUB-5, GUIDE-1)",
       permission="admin.directory", tag="admin-directory", response=AdminGuideView)
    async def admin_guide(ctx: RequestContext) -> Any:
        return {"pages": await directory.guide.guide(everything=True)}

    @r("GET", "/api/v1/admin/guide/<slug>", summary="One visit guide page with its body, hidden too (PUB-5)",
       permission="admin.directory", tag="admin-directory", response=AdminGuideArticleView)
    async def admin_guide_page(ctx: RequestContext, slug: str) -> Any:
        return await directory.guide.guide_page(path_id(slug, "就医指南"), everything=True)

    @r("PUT", "/api/v1/admin/guide/<slug>", summary="Create or replace a visit guide page (PUB-5, GUIDE-1)",
       permission="admin.directory", body=GuideBody, tag="admin-directory", response=SlugView)
    async def put_guide(ctx: RequestContext, body: GuideBody, slug: str) -> Any:
        slug = check_id(slug, "指南页面名")
        page = clean("guide", msgspec.structs.asdict(body))
        await directory.guide.put_guide_page(editor(ctx), slug, page)
        return {"slug": slug}

    @r("GET", "/api/v1/admin/announcements", summary="All announcements with read counts (ADM-5)",
       permission="admin.directory", tag="admin-directory", response=AdminAnnouncementsView)
    async def admin_announcements(ctx: RequestContext) -> Any:
        return {"announcements": await directory.announcements.all_announcements(now=dt.datetime.now(dt.UTC))}

    @r("POST", "/api/v1/admin/announcements", summary="Create an announcement shown from start to end (ADM-5)",
       permission="admin.directory", body=AnnouncementBody, tag="admin-directory", response=CreatedView, status=201)
    async def create_announcement(ctx: RequestContext, body: AnnouncementBody) -> Any:
        item = clean("announcement", msgspec.structs.asdict(body))
        _aware(body.starts_at)
        _aware(body.ends_at)
        announcement_id = await directory.announcements.create_announcement(editor(ctx), item)
        return json_response({"id": announcement_id}, 201)

    @r("PATCH", "/api/v1/admin/announcements/<announcement_id>",
       summary="Change an announcement, its period, or withdraw it (ADM-5)", permission="admin.directory",
       body=AnnouncementChange, tag="admin-directory", response=ChangedView)
    async def change_announcement(ctx: RequestContext, body: AnnouncementChange, announcement_id: str) -> Any:
        changes = clean("announcement", _given(body))
        for name in ("starts_at", "ends_at"):
            if name in changes:
                _aware(changes[name])
        await directory.announcements.change_announcement(
            editor(ctx), path_id(announcement_id, "公告"), changes
        )
        return {"id": announcement_id, "changed": sorted(changes)}

    @r("PUT", "/api/v1/admin/prices/<code>", summary="Create or change a price item; the change is kept (ADM-6)",
       permission="admin.directory", body=PriceBody, tag="admin-directory", response=PriceSetView)
    async def put_price(ctx: RequestContext, body: PriceBody, code: str) -> Any:
        code = check_id(code, "项目编码")
        item = clean("price", msgspec.structs.asdict(body))
        change = await directory.prices.put_price(editor(ctx), code, item)
        return {"code": code, "changed": change is not None}

    @r("GET", "/api/v1/admin/prices", summary="The price list, items taken off it too (ADM-6)",
       permission="admin.directory", tag="admin-directory", query=("q",), response=AdminPricesView)
    async def admin_prices(ctx: RequestContext) -> Any:
        search = (request.args.get("q") or "").strip() or None
        if search is not None and (len(search) > 100 or "\x00" in search):
            raise ApiError(400, "bad_request", "搜索内容过长或含有不允许的字符 (q is too long)")
        return {"prices": await directory.prices.prices(search=search, category=None, everything=True)}

    @r("GET", "/api/v1/admin/prices/history", summary="Price list changes: who, when, old and new (ADM-6)",
       permission="admin.directory", tag="admin-directory", query=("code", "limit"), response=PriceHistoryView)
    async def price_history(ctx: RequestContext) -> Any:
        code = request.args.get("code") or None
        if code is not None:
            code = path_id(code, "价格项目")
        changes = await directory.prices.price_history(code=code, limit=int_arg("limit", 200, 1, 1000))
        return {"changes": changes}

    @r("GET", "/api/v1/admin/triage/rules", summary="The smart triage rules (OUT-1)", permission="admin.directory",
       tag="admin-directory", response=TriageRulesView)
    async def triage_rules(ctx: RequestContext) -> Any:
        return {"rules": await directory.triage.triage_rules_json(), "body_parts": list(BODY_PARTS)}

    @r("PUT", "/api/v1/admin/triage/rules/<rule_id>", summary="Create or replace a smart triage rule (OUT-1)",
       permission="admin.directory", body=TriageRuleBody, tag="admin-directory", response=CreatedView)
    async def put_triage_rule(ctx: RequestContext, body: TriageRuleBody, rule_id: str) -> Any:
        if body.body_part not in BODY_PARTS:
            raise ApiError(422, "invalid", f"身体部位应为：{'、'.join(BODY_PARTS)} (unknown body part)")
        rule_id = check_id(rule_id, "规则编号")
        fields = clean("triage", {
            "keywords": ",".join(body.keywords), "note": body.note, "min_age": body.min_age,
            "max_age": body.max_age, "priority": body.priority,
        })
        low, high = fields["min_age"], fields["max_age"]
        if low is not None and high is not None and low > high:
            raise ApiError(422, "invalid", "最小年龄不能大于最大年龄 (min_age > max_age)")
        departments = tuple(check_id(d, "科室编号") for d in body.departments)
        rule = TriageRule(
            rule_id, body.body_part, keywords_of(fields["keywords"]), departments, body.sex, fields["min_age"],
            fields["max_age"], fields["priority"], fields["note"],
        )
        await directory.triage.put_triage_rule(editor(ctx), rule)
        return {"id": rule_id}

    @r("DELETE", "/api/v1/admin/triage/rules/<rule_id>", summary="Delete a smart triage rule (OUT-1)",
       permission="admin.directory", tag="admin-directory", response=DeletedView)
    async def delete_triage_rule(ctx: RequestContext, rule_id: str) -> Any:
        await directory.triage.delete_triage_rule(editor(ctx), path_id(rule_id, "分诊规则"))
        return {"deleted": rule_id}
