"""The admin console's 医院信息 and 系统管理 pages in Chromium on a PC (issue 17).

An administrator signs in with password + TOTP and works through the pages as a person does, by
role and visible Chinese text: a new department reaches the patient app (ADM-2), a CSV import with
a bad line names that line and imports the others (ADM-3), an announcement with its period shows
its read count (ADM-5), a price change lands in the history (ADM-6), the audit log shows those
actions and its CSV export matches (ADM-7), a partner key is issued, shown once and revoked (SCH-9).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from ..servers import Server
from .browser import DESKTOP, PHONE, Chromium
from .conftest import sign_in_staff
from .test_patient_shell import csp_or_script_errors, sign_in

SHOTS = Path("/tmp/a1-shots")


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def admin_token(page: Page) -> str:
    """The console's own session token (sessionStorage), for the checks made over HTTP."""
    return str(page.evaluate("() => JSON.parse(sessionStorage.getItem('carehub.admin.session')).token"))


def table(page: Any, label: str) -> Any:
    """An Element Plus table by its aria-label (its header and body are separate <table>s inside)."""
    return page.locator(f'.el-table[aria-label="{label}"]')


def body_rows(page: Any, label: str) -> Any:
    return table(page, label).locator(".el-table__body tr")


def choose(page: Page, within: Any, label: str, option: str | None = None) -> None:
    """Pick an option of an Element Plus select (by the select's aria-label); the first when not named."""
    wrapper = within.locator(".el-select__wrapper", has=page.get_by_label(label))
    wrapper.click()
    # the options of *this* select (the list it controls): another select's list may still be fading out
    listbox = page.locator(f'[id="{wrapper.locator("input[aria-controls]").get_attribute("aria-controls")}"]')
    options = listbox.locator(".el-select-dropdown__item:visible")
    (options.filter(has_text=option).first if option else options.first).click()


def menu(page: Page, title: str) -> None:
    page.get_by_role("menuitem", name=title).click()
    expect(page.get_by_role("heading", name=title)).to_be_visible()


async def test_departments_and_doctors_reach_the_patient_app(
    chromium: Chromium, sms_hub: tuple[Server, str], tmp_path: Path
) -> None:
    hub, gateway = sms_hub
    page = await chromium.page(**DESKTOP)
    csv_file = tmp_path / "doctors.csv"
    csv_file.write_text(
        "账号,姓名,科室,职称,擅长,专家\n"
        "doc_lin,林静,endo,主治医师,糖尿病,否\n"
        "doc_bad,坏行,nowhere,主治医师,甲状腺,否\n"
        "doc_qian,钱多,内分泌科,副主任医师,甲状腺结节,是\n",
        encoding="gbk",
    )

    def create_department() -> None:
        sign_in_staff(page, hub.base + "/admin/", "admin")
        menu(page, "科室管理")
        page.get_by_role("button", name="新增科室").click()
        dialog = page.get_by_role("dialog", name="新增科室")
        # the form checks before sending: an id with spaces is refused in Chinese
        dialog.get_by_label("科室编号").fill("内 分泌")
        dialog.get_by_label("科室名称").fill("内分泌科")
        dialog.get_by_role("button", name="保存").click()
        expect(dialog.get_by_text("科室编号只能包含字母、数字")).to_be_visible()
        dialog.get_by_label("科室编号").fill("endo")
        dialog.get_by_label("房间").fill("B区 305")
        dialog.get_by_label("科室电话").fill("010-12345678")
        dialog.get_by_role("button", name="保存").click()
        expect(dialog).to_be_hidden()
        expect(page.get_by_role("row", name=re.compile("endo.*内分泌科.*启用中"))).to_be_visible()
        # the server's own Chinese refusal is shown in the form: the id is taken
        page.get_by_role("button", name="新增科室").click()
        dialog.get_by_label("科室编号").fill("endo")
        dialog.get_by_label("科室名称").fill("内分泌二科")
        dialog.get_by_role("button", name="保存").click()
        expect(dialog.get_by_role("alert")).to_contain_text("科室编号 endo 已存在")
        shot(page, "admin-department-form")
        dialog.get_by_role("button", name="取消").click()
        shot(page, "admin-departments")

    await chromium.run(create_department)
    async with hub.http() as http:
        listed = (await http.get("/api/v1/departments")).json()["departments"]
    assert [d["name"] for d in listed if d["id"] == "endo"] == ["内分泌科"]

    def import_doctors() -> None:
        menu(page, "医生管理")
        page.get_by_role("button", name="批量导入").click()
        dialog = page.get_by_role("dialog", name="批量导入医生")
        dialog.get_by_label("选择 CSV 文件").set_input_files(str(csv_file))
        dialog.get_by_role("button", name="上传并导入").click()
        # all or none: nothing imported yet, and the bad line is named with its error
        expect(dialog.get_by_role("alert")).to_contain_text("1 行有错误，未导入任何医生")
        errors = table(dialog, "导入错误")
        expect(errors.get_by_role("row", name=re.compile("3.*第 3 行：科室“nowhere”不存在"))).to_be_visible()
        shot(page, "admin-doctors-import-errors")
        dialog.get_by_role("button", name="跳过错误行，导入其余 2 行").click()
        expect(dialog.get_by_text("已导入 2 名医生，跳过 1 行")).to_be_visible()
        expect(dialog.get_by_role("row", name=re.compile("doc_lin.*林静"))).to_be_visible()
        expect(dialog.get_by_role("row", name=re.compile("doc_qian.*钱多"))).to_be_visible()
        shot(page, "admin-doctors-imported")
        dialog.get_by_role("button", name="完成").click()
        expect(page.get_by_role("row", name=re.compile("林静.*内分泌科"))).to_be_visible()
        expect(page.get_by_role("row", name=re.compile("钱多.*内分泌科"))).to_be_visible()
        expect(page.get_by_role("row", name=re.compile("坏行"))).to_have_count(0)
        # one more by hand; the server's refusal of a taken login is shown in the form
        page.get_by_role("button", name="新增医生").click()
        dialog = page.get_by_role("dialog", name="新增医生")
        dialog.get_by_label("账号").fill("doctor1")
        dialog.get_by_label("姓名").fill("周明")
        choose(page, dialog, "科室", "内分泌科")
        dialog.get_by_label("职称").fill("主治医师")
        dialog.get_by_label("擅长").fill("骨质疏松")
        dialog.get_by_role("button", name="创建").click()
        expect(dialog.get_by_role("alert")).to_contain_text("账号 doctor1 已被使用")
        dialog.get_by_label("账号").fill("doc_zhou")
        dialog.get_by_role("button", name="创建").click()
        expect(dialog.get_by_text("初始密码和动态验证码绑定链接只显示这一次")).to_be_visible()
        expect(dialog.get_by_text("otpauth://totp/CareHub:doc_zhou")).to_be_visible()
        dialog.get_by_role("button", name="我已保存，关闭").click()
        expect(page.get_by_role("row", name=re.compile("周明.*内分泌科.*主治医师"))).to_be_visible()
        # disable one: the directory leaves them out
        page.get_by_role("row", name=re.compile("钱多")).get_by_role("button", name="停用").click()
        expect(page.get_by_role("row", name=re.compile("钱多.*已停用"))).to_be_visible()
        shot(page, "admin-doctors")
        # each change is in the audit log, by the admin
        menu(page, "审计日志")
        audit = table(page, "审计记录")
        for action in ("新增科室 department.create", "导入医生 doctor.import", "修改医生 doctor.change"):
            expect(audit.get_by_role("row", name=re.compile(f"系统管理员.*{action}"))).to_be_visible()

    await chromium.run(import_doctors)
    async with hub.http() as http:
        endo = (await http.get("/api/v1/departments/endo")).json()
    assert sorted(d["name"] for d in endo["doctors"]) == ["周明", "林静"]

    # the patient app lists the new department
    phone = await chromium.page(**PHONE)
    await sign_in(chromium, phone, hub, gateway)

    def patient_sees_it() -> None:
        phone.goto(hub.base + "/h5/departments")
        expect(phone.get_by_text("内分泌科").first).to_be_visible()

    await chromium.run(patient_sees_it)

    def disable_department() -> None:
        menu(page, "科室管理")
        page.get_by_role("row", name=re.compile("endo.*内分泌科")).get_by_role("button", name="停用").click()
        confirm = page.locator(".el-popconfirm:visible")
        expect(confirm).to_contain_text("停用后患者端不再显示该科室")
        confirm.get_by_role("button", name="停用").click()
        expect(page.get_by_role("row", name=re.compile("endo.*内分泌科.*已停用"))).to_be_visible()

    await chromium.run(disable_department)
    async with hub.http() as http:
        listed = (await http.get("/api/v1/departments")).json()["departments"]
    assert "endo" not in [d["id"] for d in listed]
    assert csp_or_script_errors(chromium) == []


def read_csv(path: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8-sig"))))


async def test_announcement_price_audit_and_partner_keys(chromium: Chromium, sms_hub: tuple[Server, str]) -> None:
    hub, _ = sms_hub
    page = await chromium.page(**DESKTOP, accept_downloads=True)

    def announce() -> None:
        sign_in_staff(page, hub.base + "/admin/", "admin")
        menu(page, "公告管理")
        page.get_by_role("button", name="发布公告").click()
        dialog = page.get_by_role("dialog", name="发布公告")
        dialog.get_by_role("button", name="保存").click()
        expect(dialog.get_by_text("请填写公告标题")).to_be_visible()
        dialog.get_by_label("公告标题").fill("门诊楼电梯检修")
        dialog.get_by_label("公告内容").fill("本周六 8:00-12:00 门诊楼 2 号电梯停用，请走扶梯。")
        end = dialog.get_by_label("结束时间")
        end.fill("2020-01-01 08:00")
        end.press("Enter")
        dialog.get_by_role("button", name="保存").click()
        expect(dialog.get_by_text("结束时间必须晚于开始时间")).to_be_visible()
        end.fill("2099-12-31 18:00")
        end.press("Enter")
        dialog.get_by_role("button", name="保存").click()
        expect(dialog).to_be_hidden()
        expect(page.get_by_role("row", name=re.compile("门诊楼电梯检修.*2099.12.31 18:00.*展示中.*0"))).to_be_visible()

    await chromium.run(announce)
    token = await chromium.run(admin_token, page)
    async with hub.http(token) as http:
        listed = (await http.get("/api/v1/admin/announcements")).json()["announcements"]
    (item,) = [a for a in listed if a["title"] == "门诊楼电梯检修"]
    assert item["read_count"] == 0 and item["ends_at"].startswith("2099-12-31T10:00:00")  # 18:00 in Shanghai
    async with hub.http(await hub.token("patient1")) as http:
        assert (await http.post(f"/api/v1/announcements/{item['id']}/read")).status_code == 200

    def read_count_and_price() -> None:
        page.get_by_role("button", name="刷新").click()
        expect(page.get_by_role("row", name=re.compile("门诊楼电梯检修.*展示中.*1"))).to_be_visible()
        shot(page, "admin-announcements")
        menu(page, "价格公示")
        page.get_by_role("button", name="新增项目").click()
        dialog = page.get_by_role("dialog", name="新增价格项目")
        dialog.get_by_label("项目编码").fill("LAB-A1C")
        dialog.get_by_label("项目名称").fill("糖化血红蛋白")
        dialog.get_by_label("类别").fill("检验")
        dialog.get_by_label("单位").fill("次")
        dialog.get_by_label("价格（元）").fill("45.5")
        dialog.get_by_role("button", name="保存").click()
        expect(dialog).to_be_hidden()
        page.get_by_role("row", name=re.compile("LAB-A1C")).get_by_role("button", name="修改").click()
        dialog = page.get_by_role("dialog", name="修改价格：糖化血红蛋白")
        dialog.get_by_label("价格（元）").fill("50")
        dialog.get_by_role("button", name="保存").click()
        expect(dialog).to_be_hidden()
        expect(table(page, "价格列表").get_by_role("row", name=re.compile("LAB-A1C.*¥50.00"))).to_be_visible()
        history = table(page, "变更记录")
        changed = history.get_by_role("row", name=re.compile("LAB-A1C.*修改.*系统管理员.*¥45.50 → ¥50.00"))
        created = history.get_by_role("row", name=re.compile("LAB-A1C.*新增.*系统管理员.*糖化血红蛋白.*¥45.50"))
        expect(changed).to_be_visible()
        expect(created).to_be_visible()
        shot(page, "admin-prices")

    await chromium.run(read_count_and_price)

    def audit() -> dict[str, Any]:
        menu(page, "审计日志")
        rows = table(page, "审计记录")
        price_rows = rows.get_by_role("row", name=re.compile("系统管理员.*price.change.*price.LAB-A1C"))
        expect(price_rows.first).to_be_visible()
        expect(rows.get_by_role("row", name=re.compile("发布公告.*announcement.create"))).to_be_visible()
        page.get_by_role("button", name="校验日志完整性").click()
        expect(page.get_by_role("status").filter(has_text="日志完整")).to_be_visible()
        # filter to the admin's price changes, then export exactly those
        page.locator(".el-select__wrapper", has=page.get_by_label("操作人")).click()
        page.get_by_role("combobox", name="操作人").fill("admin")
        page.locator(".el-select-dropdown__item:visible").filter(has_text="系统管理员（admin）").click()
        page.get_by_label("对象").fill("price/")
        page.get_by_role("button", name="查询").click()
        expect(body_rows(page, "审计记录")).to_have_count(2)  # the two changes
        shown = [r.inner_text() for r in body_rows(page, "审计记录").all()]
        with page.expect_download() as download:
            page.get_by_role("button", name="导出 CSV").click()
        shot(page, "admin-audit")
        admin = page.evaluate("() => JSON.parse(sessionStorage.getItem('carehub.admin.session')).account.id")
        return {"path": download.value.path(), "name": download.value.suggested_filename, "shown": shown,
                "admin": admin}

    exported = await chromium.run(audit)
    assert exported["name"].startswith("审计日志-") and exported["name"].endswith(".csv")
    rows = read_csv(exported["path"])
    assert [(r["action"], r["target"]) for r in rows] == [("price.change", "price/LAB-A1C")] * 2
    assert {r["actor_id"] for r in rows} == {exported["admin"]}
    # the file holds the rows the page shows (oldest first, the page newest first)
    assert [r["id"] for r in rows] == [s.split()[0] for s in reversed(exported["shown"])]

    def partner_keys() -> tuple[str, str]:
        menu(page, "合作方密钥")
        card = page.get_by_label("合作方 区域挂号平台")
        card.get_by_role("button", name="签发密钥").click()
        dialog = page.get_by_role("dialog", name="签发密钥：区域挂号平台")
        dialog.get_by_role("button", name="签发").click()
        expect(dialog.get_by_role("alert")).to_contain_text("请至少选择一项允许的操作")
        dialog.get_by_text("读取科室与医生").click()
        dialog.get_by_role("button", name="签发").click()
        expect(dialog.get_by_text("密钥秘密只显示这一次")).to_be_visible()
        key_id = dialog.get_by_test_id("key-id").inner_text()
        secret = dialog.get_by_test_id("key-secret").inner_text()
        shot(page, "admin-partner-key-issued")
        dialog.get_by_role("button", name="我已保存，关闭").click()
        expect(dialog).to_be_hidden()
        row = card.get_by_role("row", name=re.compile(key_id))
        expect(row).to_contain_text("有效")
        # the secret is nowhere on the page once the dialog is closed
        assert secret not in page.content()
        row.get_by_role("button", name="吊销").click()
        confirm = page.locator(".el-popconfirm:visible")
        expect(confirm).to_contain_text(f"吊销密钥 {key_id}？吊销后不能恢复。")
        confirm.get_by_role("button", name="吊销").click()
        expect(row).to_contain_text("已吊销")
        shot(page, "admin-partner-keys")
        menu(page, "审计日志")
        audit = table(page, "审计记录")
        expect(audit.get_by_role("row", name=re.compile("吊销合作方密钥"))).to_contain_text(key_id)
        expect(audit.get_by_role("row", name=re.compile("签发合作方密钥"))).to_contain_text(key_id)
        return key_id, secret

    key_id, secret = await chromium.run(partner_keys)
    assert re.fullmatch(r"pk_[0-9a-f]{16}", key_id) and len(secret) >= 32
    async with hub.http(token) as http:
        listed = (await http.get("/api/v1/admin/partners")).json()
    assert [k["revoked"] for p in listed["partners"] for k in p["keys"] if k["key_id"] == key_id] == [True]
    assert csp_or_script_errors(chromium) == []


async def test_hospital_news_guide_triage_and_tests_pages_change_what_patients_see(
    chromium: Chromium, sms_hub: tuple[Server, str]
) -> None:
    """ADM-4, PUB-3, PUB-5, OUT-1, OUT-14: each page saves through its form and the public API shows it."""
    hub, _ = sms_hub
    page = await chromium.page(**DESKTOP)

    def edit_everything() -> None:
        sign_in_staff(page, hub.base + "/admin/", "admin")
        menu(page, "医院介绍")
        page.get_by_label("电话", exact=True).fill("010-88886666")
        page.get_by_role("button", name="添加图片").click()
        image = page.get_by_label(re.compile(r"第 \d+ 张图片地址")).last
        image.fill("ftp://wrong")
        page.get_by_role("button", name="保存医院介绍").click()
        expect(page.get_by_role("alert").filter(has_text="图片的地址必须是 http:// 或 https://")).to_be_visible()
        image.fill("https://hospital.example.cn/lobby.jpg")
        page.get_by_role("button", name="保存医院介绍").click()
        expect(page.get_by_text("医院介绍已保存")).to_be_visible()
        expect(page.get_by_role("alert").filter(has_text="图片的地址")).to_have_count(0)
        shot(page, "admin-hospital")

        menu(page, "新闻资讯")
        page.get_by_role("button", name="发布新闻").click()
        dialog = page.get_by_role("dialog", name="发布新闻")
        dialog.get_by_label("新闻标题").fill("我院开通互联网医院")
        dialog.get_by_label("摘要").fill("足不出户复诊开药")
        dialog.get_by_label("封面图片").fill("not a url")
        dialog.get_by_label("新闻正文").fill("即日起，复诊患者可在手机上问诊。")
        dialog.get_by_role("button", name="保存").click()
        expect(dialog.get_by_text("封面图片必须是 http:// 或 https:// 开头的网址")).to_be_visible()
        dialog.get_by_label("封面图片").fill("")
        dialog.get_by_role("button", name="保存").click()
        expect(dialog).to_be_hidden()
        expect(page.get_by_role("row", name=re.compile("我院开通互联网医院.*已发布"))).to_be_visible()
        shot(page, "admin-news")

        menu(page, "就医指南")
        page.get_by_role("button", name="新增页面").click()
        dialog = page.get_by_role("dialog", name="新增指南页面")
        dialog.get_by_label("页面名").fill("parking")
        dialog.get_by_label("指南标题").fill("停车指引")
        dialog.get_by_label("指南正文").fill("地下停车场入口在北门。")
        dialog.get_by_role("button", name="保存").click()
        expect(dialog).to_be_hidden()
        expect(page.get_by_role("row", name=re.compile("parking.*停车指引.*显示中"))).to_be_visible()
        shot(page, "admin-guide")

        menu(page, "智能导诊规则")
        page.get_by_role("button", name="新增规则").click()
        dialog = page.get_by_role("dialog", name="新增导诊规则")
        dialog.get_by_label("规则编号").fill("eye-red")
        choose(page, dialog, "身体部位", "头部")
        dialog.get_by_label("症状关键词").fill("眼红，眼痒")
        dialog.get_by_role("button", name="保存").click()
        expect(dialog.get_by_text("请至少选择一个推荐科室")).to_be_visible()
        choose(page, dialog, "推荐科室")
        dialog.get_by_label("症状关键词").click()  # close the options
        dialog.get_by_role("button", name="保存").click()
        expect(dialog).to_be_hidden()
        expect(page.get_by_role("row", name=re.compile("eye-red.*头部.*眼红、眼痒"))).to_be_visible()
        shot(page, "admin-triage")

        menu(page, "自助开单项目")
        page.get_by_role("button", name="新增项目").click()
        dialog = page.get_by_role("dialog", name="新增自助开单项目")
        dialog.get_by_label("项目编码").fill("LAB-VD")
        dialog.get_by_label("项目名称").fill("维生素D测定")
        dialog.get_by_label("价格（元）").fill("88")
        dialog.get_by_label("注意事项").fill("无需空腹")
        dialog.get_by_role("button", name="保存").click()
        expect(dialog).to_be_hidden()
        expect(page.get_by_role("row", name=re.compile("LAB-VD.*维生素D测定.*¥88.00.*可开单"))).to_be_visible()
        shot(page, "admin-tests")

        menu(page, "账号管理")
        choose(page, page, "按角色筛选", "医生")
        expect(body_rows(page, "账号列表")).to_have_count(6)
        page.get_by_role("button", name="新增工作人员账号").click()
        dialog = page.get_by_role("dialog", name="新增工作人员账号")
        dialog.get_by_label("账号", exact=True).fill("nurse_li")
        dialog.get_by_label("姓名").fill("李护士")
        dialog.get_by_text("药师").click()
        dialog.get_by_label("初始密码").fill("short")
        dialog.get_by_role("button", name="创建").click()
        expect(dialog.get_by_text("密码至少 10 位")).to_be_visible()
        dialog.get_by_label("初始密码").fill("Nurse-Li-2026!")
        dialog.get_by_role("button", name="创建").click()
        expect(dialog.get_by_text("otpauth://")).to_be_visible()
        dialog.get_by_role("button", name="我已保存，关闭").click()
        choose(page, page, "按角色筛选", "药师")
        expect(body_rows(page, "账号列表")).to_have_count(2)  # pharmacist1 and the new one
        page.get_by_label("搜索账号").fill("nurse")
        page.get_by_label("搜索账号").press("Enter")
        expect(body_rows(page, "账号列表")).to_have_count(1)
        expect(page.get_by_role("row", name=re.compile("nurse_li.*李护士.*药师.*正常"))).to_be_visible()
        shot(page, "admin-accounts")

        menu(page, "角色权限")
        page.get_by_role("button", name="新增角色").click()
        dialog = page.get_by_role("dialog", name="新增角色")
        dialog.get_by_label("角色名").fill("triage-desk")
        dialog.get_by_label("说明").fill("导诊台")
        dialog.get_by_text("directory.read", exact=True).click()
        dialog.get_by_role("button", name="保存").click()
        expect(dialog).to_be_hidden()
        expect(page.get_by_role("row", name=re.compile("triage-desk.*导诊台.*自定义"))).to_be_visible()
        shot(page, "admin-roles")

    await chromium.run(edit_everything)
    async with hub.http() as http:
        hospital = (await http.get("/api/v1/hospital")).json()
        news = (await http.get("/api/v1/news")).json()["news"]
        guide = (await http.get("/api/v1/guide/parking")).json()
        triage = (await http.post("/api/v1/triage", json={"body_part": "头部", "symptoms": ["眼红"]})).json()
        tests = (await http.get("/api/v1/tests")).json()["tests"]
    assert hospital["phone"] == "010-88886666"
    assert hospital["images"][-1]["url"] == "https://hospital.example.cn/lobby.jpg"
    assert "我院开通互联网医院" in [n["title"] for n in news]
    assert guide["title"] == "停车指引" and guide["body"] == "地下停车场入口在北门。"
    assert any("眼红" in r["matched"] for r in triage["recommendations"])
    assert [(t["name"], t["price_fen"]) for t in tests if t["code"] == "LAB-VD"] == [("维生素D测定", 8800)]
    assert csp_or_script_errors(chromium) == []
