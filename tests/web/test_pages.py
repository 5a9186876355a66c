"""The hub serves the built pages (carehub/http/pages.py), checked over HTTP against a small
build made here, so the paths, caching and headers are tested whatever web/ holds."""

from __future__ import annotations

import gzip
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from ..servers import Server, run_server

SCRIPT = "console.log('患者服务');\n" * 200  # over 1 KiB: served gzipped when asked


def write_build(root: Path) -> Path:
    for entry in ("h5", "doctor", "admin", "display"):
        (root / entry).mkdir(parents=True)
        (root / entry / "index.html").write_text(
            f'<!doctype html><title>{entry}</title><script type="module" src="/assets/{entry}-a1B2c3.js"></script>',
            encoding="utf-8",
        )
    (root / "assets").mkdir()
    (root / "assets" / "h5-a1B2c3.js").write_text(SCRIPT, encoding="utf-8")
    (root / "favicon.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>', encoding="utf-8")
    return root


@pytest.fixture
async def hub(database_url: str, tmp_path: Path) -> AsyncIterator[Server]:
    with trio.fail_after(120):
        async with run_server(database_url, web_dist=write_build(tmp_path / "dist")) as srv:
            yield srv


async def test_the_front_door_leads_to_the_patient_app(hub: Server) -> None:
    async with hub.http() as http:
        response = await http.get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/h5/"


@pytest.mark.parametrize(
    ("path", "entry"),
    [
        ("/h5/", "h5"),
        ("/h5/departments/cardio", "h5"),
        ("/h5/login?next=/me", "h5"),
        ("/doctor/", "doctor"),
        ("/doctor/queue/today", "doctor"),
        ("/admin/statistics", "admin"),
        ("/display/cardio", "display"),
    ],
)
async def test_a_deep_link_reloads_into_its_page(hub: Server, path: str, entry: str) -> None:
    async with hub.http() as http:
        response = await http.get(path)
    assert response.status_code == 200
    assert f"<title>{entry}</title>" in response.text
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.headers["Cache-Control"] == "no-cache"


async def test_pages_carry_the_security_headers(hub: Server) -> None:
    async with hub.http() as http:
        response = await http.get("/h5/")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-eval" not in csp
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"


async def test_hashed_assets_are_cached_for_a_year_and_gzipped(hub: Server) -> None:
    async with hub.http() as http:
        packed = await http.get("/assets/h5-a1B2c3.js", headers={"Accept-Encoding": "gzip"})
        plain = await http.get("/assets/h5-a1B2c3.js", headers={"Accept-Encoding": "identity"})
    assert packed.status_code == 200
    assert packed.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert packed.headers["Content-Encoding"] == "gzip"
    assert packed.text == SCRIPT  # httpx undoes the gzip
    assert int(packed.headers["Content-Length"]) < len(SCRIPT.encode()) // 4
    assert packed.headers["Content-Type"].startswith("text/javascript")
    assert packed.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Encoding" not in plain.headers
    assert plain.content == SCRIPT.encode()
    assert gzip.decompress(gzip.compress(plain.content)) == plain.content


async def test_the_favicon_is_served(hub: Server) -> None:
    async with hub.http() as http:
        for path in ("/favicon.ico", "/favicon.svg"):
            response = await http.get(path)
            assert response.status_code == 200
            assert response.headers["Content-Type"] == "image/svg+xml"


@pytest.mark.parametrize("path", ["/assets/nope.js", "/assets/..%2Fh5%2Findex.html", "/assets/.hidden"])
async def test_a_missing_or_crafted_asset_name_is_a_404(hub: Server, path: str) -> None:
    async with hub.http() as http:
        response = await http.get(path)
    assert response.status_code == 404


async def test_api_paths_still_answer_json(hub: Server) -> None:
    async with hub.http() as http:
        missing = await http.get("/api/v1/nowhere")
        healthy = await http.get("/healthz")
        ops = await http.get("/ops")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert healthy.json() == {"status": "ok"}
    assert ops.status_code == 200 and "text/html" in ops.headers["Content-Type"]


async def test_a_page_is_not_an_answer_to_a_post(hub: Server) -> None:
    async with hub.http() as http:
        response = await http.post("/h5/", json={})
    assert response.status_code in (404, 405)
    assert response.json()["error"]["message"]


async def test_without_a_build_the_pages_say_how_to_build_them(database_url: str, tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with run_server(database_url, web_dist=tmp_path / "not-built") as srv, srv.http() as http:
            response = await http.get("/h5/")
            api = await http.get("/api/v1/hospital")
    assert response.status_code == 503
    assert "text/html" in response.headers["Content-Type"]
    assert "页面尚未构建" in response.text
    assert "./scripts/serve" in response.text
    assert "Traceback" not in response.text
    assert api.status_code == 200  # the API does not need the pages


@pytest.mark.parametrize("app", ["h5", "doctor", "admin"])
def test_each_apps_route_files_name_every_route_and_path_once(app: str) -> None:
    """Areas add routes in files of their own (web/src/<app>/routes/*.js); a repeated name or path would
    make vue-router silently drop one area's page."""
    root = Path(__file__).resolve().parents[2] / "web" / "src" / app / "routes"
    text = "\n".join(path.read_text(encoding="utf-8") for path in sorted(root.glob("*.js")))
    helper = re.findall(r"\bpage\('([^']+)', '([^']+)'", text)  # page(path, name, ...) shorthands
    names = re.findall(r"\bname: '([^']+)'", text) + [name for _, name in helper]
    paths = re.findall(r"\bpath: '([^']+)'", text) + [path for path, _ in helper]
    assert names and paths
    assert sorted({n for n in names if names.count(n) > 1}) == []
    assert sorted({p for p in paths if paths.count(p) > 1}) == []
