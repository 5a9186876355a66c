"""The built pages (``web/dist``, issue 17): the patient app, the staff consoles, the hall screen.

Paths, each page a single-page app whose own router reads the rest of the path (so a deep link
works on reload):

=========================  =====================================================
``/``                      302 to ``/h5/`` (the patient app is the front door)
``/h5/...``                the patient app (H5)
``/doctor/...``            the doctor workstation
``/admin/...``             the admin console
``/display/<department>``  the hall screen of one department
``/assets/<name>``         hashed JS/CSS/images: cached for a year, gzip when asked
``/favicon.svg|ico``       the hospital's icon
=========================  =====================================================

``/ops`` stays a route of its own (``rest/ops.py``), and nothing under ``/api`` is touched: an
unknown API path still gets the JSON 404. The pages are served before routing (a
``before_request`` hook), so they are not REST operations: the OpenAPI document and the route x
role table describe the API only.

HTML is never cached (a new build is seen at once) and carries the security headers: a CSP with
no ``unsafe-eval`` (Vue's templates are compiled at build time) and no inline scripts, ``nosniff``,
and a referrer policy that keeps paths to this origin. Tokens never travel in a URL: the pages keep
them in Web Storage and send them as ``Authorization`` headers or in the ``/ws`` ``auth`` frame.

Where the build lives is ``Config.web_dist`` (default: ``web/dist`` of the checkout this package
runs from, which an editable install is). Without a build every page answers a 503 page that says
how to build it.
"""

from __future__ import annotations

import gzip
import logging
import re
from pathlib import Path

import trio
from quart import Quart, Response, request

import carehub

log = logging.getLogger("carehub.http.pages")

#: the first path segment -> the page's HTML in the build
ENTRIES: dict[str, str] = {
    "h5": "h5/index.html",
    "doctor": "doctor/index.html",
    "admin": "admin/index.html",
    "display": "display/index.html",
}

CSP = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    # Vue and Vant set styles through the CSSOM (allowed); no inline <style> or style="" in the HTML
    "style-src 'self'",
    "img-src 'self' data: blob: https:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "media-src 'self' blob:",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "camera=(self), microphone=(self), geolocation=(self)",
}

HTML_CACHE = "no-cache"
ASSET_CACHE = "public, max-age=31536000, immutable"

CONTENT_TYPES: dict[str, str] = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".ttf": "font/ttf",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}
COMPRESSIBLE = frozenset({".js", ".css", ".svg", ".json", ".txt"})

#: a hashed asset's name as Vite writes it (flat in assets/, no path, no dot files)
_ASSET_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,200}")

NOT_BUILT = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>页面尚未构建</title></head>
<body>
<h1>页面尚未构建</h1>
<p>服务器正在运行，但网页尚未构建，请稍后再试或联系信息科。</p>
<p lang="en">The hub is running but its pages are not built: no <code>{missing}</code>.
Run <code>./scripts/serve</code> (it builds them), or <code>cd web &amp;&amp; npm ci &amp;&amp; npm run build</code>
with the node of <code>.venv</code>, or set <code>CAREHUB_WEB_DIST</code> to a built <code>dist</code> folder.</p>
</body></html>
"""


def default_web_dist() -> Path:
    """``web/dist`` of the checkout holding this package (an editable install runs from it)."""
    return Path(carehub.__file__).resolve().parent.parent / "web" / "dist"


class Pages:
    """Answers page, asset and favicon paths from one build folder; ``None`` for every other path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        #: hashed assets never change under one name: read (and gzip) each once
        self._assets: dict[str, tuple[bytes, bytes | None]] = {}

    async def answer(self, method: str, path: str, accepts_gzip: bool) -> Response | None:
        if method not in ("GET", "HEAD"):
            return None
        if path == "/":
            return self._redirect("/h5/")
        first, _, rest = path[1:].partition("/")
        if first in ENTRIES:
            if not rest and not path.endswith("/") and first != "display":
                return self._redirect(f"/{first}/")
            return await self._html(ENTRIES[first])
        if first == "assets" and rest:
            return await self._asset(rest, accepts_gzip)
        if path in ("/favicon.svg", "/favicon.ico"):
            return await self._file("favicon.svg", "public, max-age=86400", accepts_gzip)
        return None

    def _redirect(self, location: str) -> Response:
        response = Response("", status=302, headers={"Location": location, "Cache-Control": HTML_CACHE})
        return response

    async def _html(self, relative: str) -> Response:
        path = self.root / relative
        try:
            body = await trio.Path(path).read_bytes()
        except OSError:
            log.warning("no built page at %s: answering 503 (build web/ first)", path)
            html = NOT_BUILT.format(missing=str(path))
            return Response(html, status=503, content_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-store", "Retry-After": "30", **SECURITY_HEADERS})
        return Response(body, content_type="text/html; charset=utf-8",
                        headers={"Cache-Control": HTML_CACHE, **SECURITY_HEADERS})

    async def _asset(self, name: str, accepts_gzip: bool) -> Response | None:
        if not _ASSET_NAME.fullmatch(name) or ".." in name:
            return None
        return await self._file(f"assets/{name}", ASSET_CACHE, accepts_gzip)

    async def _file(self, relative: str, cache: str, accepts_gzip: bool) -> Response | None:
        suffix = Path(relative).suffix.lower()
        cached = self._assets.get(relative)
        if cached is None:
            try:
                raw = await trio.Path(self.root / relative).read_bytes()
            except OSError:
                return None  # the JSON 404 of every unknown path
            packed = gzip.compress(raw, 9, mtime=0) if suffix in COMPRESSIBLE and len(raw) > 1024 else None
            cached = self._assets[relative] = (raw, packed)
        raw, packed = cached
        headers = {"Cache-Control": cache, "X-Content-Type-Options": "nosniff", "Vary": "Accept-Encoding"}
        content_type = CONTENT_TYPES.get(suffix, "application/octet-stream")
        if packed is not None and accepts_gzip:
            headers["Content-Encoding"] = "gzip"
            return Response(packed, content_type=content_type, headers=headers)
        return Response(raw, content_type=content_type, headers=headers)


def _accepts_gzip(header: str) -> bool:
    for part in header.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def register_pages(app: Quart, web_dist: Path | None) -> Pages:
    """Serve the build in ``web_dist`` (None: :func:`default_web_dist`) before the app's routes."""
    pages = Pages(web_dist if web_dist is not None else default_web_dist())

    async def serve_page() -> Response | None:
        accepts_gzip = _accepts_gzip(request.headers.get("Accept-Encoding", ""))
        return await pages.answer(request.method, request.path, accepts_gzip)

    app.before_request(serve_page)
    return pages


__all__ = ["CSP", "SECURITY_HEADERS", "Pages", "default_web_dist", "register_pages"]
