"""Bulk import of doctors from a CSV file (ADM-3): all or nothing, errors named by line in Chinese."""

from __future__ import annotations

from typing import Any

import httpx

from ..servers import Server
from .helpers import as_admin, audit_actions, error_message

GOOD = (
    "账号,姓名,科室,职称,擅长,专家\n"
    "doc_wu,吴刚,cardio,主治医师,心力衰竭,否\n"
    "doc_zheng,郑红,儿科,副主任医师,小儿哮喘,是\n"
)


async def upload(server: Server, content: bytes) -> httpx.Response:
    async with await as_admin(server) as http:
        return await http.post(
            "/api/v1/admin/doctors/import", content=content, headers={"Content-Type": "text/csv"}
        )


async def directory_names(server: Server) -> set[str]:
    async with server.http() as http:
        doctors: list[dict[str, Any]] = (await http.get("/api/v1/doctors")).json()["doctors"]
    return {d["name"] for d in doctors}


async def test_doctors_are_imported_from_a_gbk_csv_with_chinese_headers(server: Server) -> None:
    """ADM-3: spreadsheets save GBK; a department may be named by id or by name."""
    response = await upload(server, GOOD.encode("gbk"))
    assert response.status_code == 201, response.text
    imported = response.json()["doctors"]
    assert [d["login"] for d in imported] == ["doc_wu", "doc_zheng"]
    assert all(d["password"] and d["totp_enrolment"].startswith("otpauth://") for d in imported)
    assert {"吴刚", "郑红"} <= await directory_names(server)
    assert [e["action"] for e in await audit_actions(server, "doctor")] == ["doctor.import"]


async def test_an_import_with_bad_lines_imports_nobody_and_names_each_bad_line(server: Server) -> None:
    """ADM-3: all or nothing; each error in Chinese with its line number (the header is line 1)."""
    text = GOOD + "doc_feng,冯雪,nowhere,主治医师,甲状腺\ndoc_he,,derm,主治医师,痤疮\n"
    response = await upload(server, text.encode())
    assert response.status_code == 422
    error = response.json()["error"]
    assert "未导入任何医生" in error["message"]
    assert [(e["line"], e["message"]) for e in error["lines"]] == [
        (4, "第 4 行：科室“nowhere”不存在"),
        (5, "第 5 行：姓名不能为空且不超过 100 字"),
    ]
    assert not {"吴刚", "郑红"} & await directory_names(server)


async def test_an_import_refuses_a_login_repeated_in_the_file_or_already_taken(server: Server) -> None:
    """ADM-3."""
    text = GOOD + "doc_wu,吴刚二,cardio,主治医师,高血压,否\ndoctor1,李建国,cardio,主任医师,冠心病,是\n"
    response = await upload(server, text.encode())
    lines = {e["line"]: e["message"] for e in response.json()["error"]["lines"]}
    assert lines == {4: "第 4 行：账号 doc_wu 与第 2 行重复", 5: "第 5 行：账号 doctor1 已被使用"}


async def test_a_file_without_a_required_column_is_refused_at_its_header(server: Server) -> None:
    """ADM-3."""
    response = await upload(server, "账号,姓名,科室\ndoc_wu,吴刚,cardio\n".encode())
    assert response.status_code == 422
    assert error_message(response) == "第 1 行（表头）：缺少列：职称、擅长"


async def test_an_empty_upload_is_refused_with_what_the_header_should_be(server: Server) -> None:
    """ADM-3."""
    response = await upload(server, b"")
    assert response.status_code == 422 and "表头" in error_message(response)


async def test_skip_invalid_imports_the_good_lines_and_reports_the_bad_ones(server: Server) -> None:
    """ADM-3: after seeing the errors an admin may import the rest (the console's "跳过错误行导入")."""
    text = GOOD + "doc_feng,冯雪,nowhere,主治医师,甲状腺\n"
    refused = await upload(server, text.encode())
    assert refused.status_code == 422 and refused.json()["error"]["valid"] == 2
    async with await as_admin(server) as http:
        response = await http.post(
            "/api/v1/admin/doctors/import", params={"skip_invalid": "1"}, content=text.encode(),
            headers={"Content-Type": "text/csv"},
        )
        nothing_good = await http.post(
            "/api/v1/admin/doctors/import", params={"skip_invalid": "1"},
            content="账号,姓名,科室,职称,擅长\ndoc_x,某某,nowhere,主治医师,甲状腺\n".encode(),
            headers={"Content-Type": "text/csv"},
        )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["imported"] == 2 and [d["login"] for d in body["doctors"]] == ["doc_wu", "doc_zheng"]
    assert body["skipped"] == [{"line": 4, "message": "第 4 行：科室“nowhere”不存在"}]
    assert {"吴刚", "郑红"} <= await directory_names(server)
    assert nothing_good.status_code == 422 and "没有可导入的行" in nothing_good.json()["error"]["message"]
