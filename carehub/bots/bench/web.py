"""``web``: the patient home page's weight and first paint on a slow phone network, and the admin
statistics over a year of a large hospital (issue 17; docs/benchmarks.md, ``web``).

``web``
    1. **Home page weight**: Debian's chromium (Playwright, a phone's viewport) opens the patient
       home page ``/h5/`` signed in (a bench patient's token in ``localStorage``, as after an SMS
       sign-in) and records every script and stylesheet it loads, module preloads and the home
       route's lazy chunks included; ``home_js_css_kb`` is the sum of each file gzip-compressed
       (level 9, as ``gzip -9``), in KiB.
    2. **First contentful paint**: the same page, cache disabled, under DevTools' "Fast 3G"
       profile through CDP ``Network.emulateNetworkConditions``: latency 562.5 ms (150 ms x 3.75),
       download 180,000 B/s (1.6 Mbit/s x 0.9), upload 84,375 B/s (750 kbit/s x 0.9), the numbers of
       Puppeteer's ``PredefinedNetworkConditions['Fast 3G']`` (DevTools' preset; Lighthouse's
       ``mobileSlow4G`` has the same latency). No CPU slowdown. ``fcp_ms`` is the median of
       ``--fcp-runs`` loads (default 5), from the ``first-contentful-paint`` performance entry.
    3. **Statistics at scale**: ``--stats-bookings`` bookings (default 1,000,000) over the previous
       calendar year, 200 doctors in the hub's departments, 3 channels, the statuses a year leaves
       (seen, no-show, cancelled, released ...), their payment orders (self, insurance, mixed) and
       two clinic sessions per doctor and day, written straight into the hub's database with
       ``INSERT ... SELECT generate_series`` (a minute or two), then ``VACUUM ANALYZE`` of the three
       tables (what autovacuum does to a year's settled rows). Each statistics route of the admin
       console is then asked ``--stats-repeat`` times (default 20) for that whole year, and for
       one department, one doctor and one channel; ``stats_p99_ms`` is the worst route's p99 over
       HTTP (``stats_p99_ms_by_query`` has each).

The database: ``--database-url`` (default ``CAREHUB_DATABASE_URL``), else the embedded PostgreSQL of
the hub the bench started (its socket, from ``postmaster.pid``). The rows the bench adds have ids
starting ``bench-`` and stay in a database given by URL (a hub the bench started is thrown away).
Like the other workloads this is an outsider: the generator's SQL knows the tables, not CareHub's code.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import os
import statistics
import time
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx

from .report import emit, note, percentile, rounded

if TYPE_CHECKING:
    from .session import Bench

CHROMIUM = "/usr/bin/chromium"
#: DevTools' "Fast 3G" (Puppeteer's PredefinedNetworkConditions['Fast 3G']): bytes/s and ms
FAST_3G: dict[str, Any] = {"offline": False, "latency": 150 * 3.75, "downloadThroughput": 1.6 * 1000 * 1000 / 8 * 0.9,
           "uploadThroughput": 750 * 1000 / 8 * 0.9}
PHONE: dict[str, Any] = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True,
         "has_touch": True, "locale": "zh-CN", "timezone_id": "Asia/Shanghai"}
DOCTORS = 200

# ---- the generator: one statement per table, on the server -------------------------------------

_SESSIONS = """
INSERT INTO clinic_sessions (id, doctor_id, department_id, day, period, room, starts_at, ends_at, slot_minutes,
                             capacity, booked, fee_fen, opens_at, status)
SELECT $1 || 's-' || doc || ':' || d || ':' || p, $1 || 'doc-' || doc, ($4::varchar[])[doc % $5 + 1], $2::date + d, p,
       '诊室' || (doc % 30 + 1), ($2::date + d)::timestamp AT TIME ZONE 'Asia/Shanghai' + interval '8 hours',
       ($2::date + d)::timestamp AT TIME ZONE 'Asia/Shanghai' + interval '12 hours', 10, 24, 0, 1000,
       ($2::date + d - 7)::timestamp AT TIME ZONE 'Asia/Shanghai',
       CASE WHEN (doc + d) % 50 = 0 THEN 'cancelled' ELSE 'open' END
FROM generate_series(0, $6 - 1) doc, generate_series(0, $3 - 1) d, unnest(ARRAY['am', 'pm']) p
"""

#: booking g: doctor g % doctors, day (g / doctors) % days; channel and status drawn with the shares a year shows
_BOOKINGS = """
INSERT INTO bookings (id, session_id, doctor_id, department_id, day, slot_no, slot_at, patient_id, account_id,
                      channel, status, fee_fen, created_at, updated_at)
SELECT $1 || 'b' || g, $1 || 's-' || doc || ':' || d || ':' || per, $1 || 'doc-' || doc,
       ($4::varchar[])[doc % $5 + 1], $2::date + d, g % 24,
       ($2::date + d)::timestamp AT TIME ZONE 'Asia/Shanghai' + interval '8 hours' + (g % 24) * interval '10 minutes',
       $1 || 'p' || (g % 200000), $1 || 'a' || (g % 200000),
       CASE WHEN r1 < 0.7 THEN 'app' WHEN r1 < 0.9 THEN 'kiosk' ELSE 'partner' END,
       CASE WHEN r2 < 0.70 THEN 'seen' WHEN r2 < 0.78 THEN 'no_show' WHEN r2 < 0.88 THEN 'cancelled'
            WHEN r2 < 0.90 THEN 'checked_in' WHEN r2 < 0.95 THEN 'booked' ELSE 'released' END,
       1000, ($2::date + d - 3)::timestamp AT TIME ZONE 'Asia/Shanghai',
       ($2::date + d)::timestamp AT TIME ZONE 'Asia/Shanghai'
FROM (SELECT g, g % $6 AS doc, (g / $6) % $3 AS d, CASE WHEN g % 2 = 0 THEN 'am' ELSE 'pm' END AS per,
             random() AS r1, random() AS r2
      FROM generate_series(1, $7) g) s
"""

_ORDERS = """
INSERT INTO payment_orders (out_trade_no, booking_id, day, doctor_id, department_id, channel, account_id, method,
                            total_fen, insurance_fen, cash_fen, status, refunded_fen, created_at, updated_at)
SELECT substr(id, 1, 24) || 'P' || substr(md5(id), 1, 6), id, day, doctor_id, department_id, channel, account_id,
       CASE WHEN r < 0.6 THEN 'self' WHEN r < 0.8 THEN 'insurance' ELSE 'mixed' END, fee_fen,
       CASE WHEN r < 0.6 THEN 0 WHEN r < 0.8 THEN fee_fen ELSE 400 END,
       CASE WHEN r < 0.6 THEN fee_fen WHEN r < 0.8 THEN 0 ELSE fee_fen - 400 END,
       CASE status WHEN 'cancelled' THEN 'refunded' WHEN 'released' THEN 'created' ELSE 'paid' END,
       CASE status WHEN 'cancelled' THEN fee_fen ELSE 0 END, created_at, updated_at
FROM (SELECT b.*, random() AS r FROM bookings b WHERE b.id LIKE $1 || 'b%') s
"""


def embedded_database_url(bench: Bench) -> str | None:
    """The DSN of the embedded PostgreSQL of the hub the bench started (from its ``postmaster.pid``)."""
    if bench.hub is None:
        return None
    pid_file = Path(bench.hub.tmp) / "data" / "pg" / "pgdata" / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
    except OSError:
        return None
    port, socket_dir = lines[3].strip(), lines[4].strip()
    return f"postgresql://postgres@/carehub?host={urllib.parse.quote(socket_dir, safe='/')}&port={port}"


async def generate(dsn: str, run: str, bookings: int, year: int) -> dict[str, Any]:
    """``bookings`` bookings (and their sessions and orders) over ``year``; returns counts and seconds."""
    prefix = f"bench-{run}-"
    first = dt.date(year, 1, 1)
    days = (dt.date(year + 1, 1, 1) - first).days
    conn = await asyncpg.connect(dsn, command_timeout=3600)
    try:
        departments = [r["id"] for r in await conn.fetch("SELECT id FROM departments ORDER BY id")]
        if not departments:
            raise RuntimeError("the hub's database has no departments (start the hub with the demo data)")
        took: dict[str, float] = {}
        for name, sql, args in (
            ("sessions", _SESSIONS, (prefix, first, days, departments, len(departments), DOCTORS)),
            ("bookings", _BOOKINGS, (prefix, first, days, departments, len(departments), DOCTORS, bookings)),
            ("orders", _ORDERS, (prefix,)),
        ):
            started = time.monotonic()
            await conn.execute(sql, *args)
            took[name] = round(time.monotonic() - started, 1)
            note(f"web: {name} written in {took[name]} s")
        started = time.monotonic()
        for table in ("bookings", "payment_orders", "clinic_sessions"):
            await conn.execute(f"VACUUM ANALYZE {table}")
        took["vacuum_analyze"] = round(time.monotonic() - started, 1)
        count = await conn.fetchval("SELECT count(*) FROM bookings WHERE day >= $1 AND day < $2",
                                    first, dt.date(year + 1, 1, 1))
        return {"bookings": int(count), "seconds": took, "department": departments[0], "doctor": f"{prefix}doc-0"}
    finally:
        await conn.close()


def measure_statistics(bench: Bench, year: int, department: str, doctor: str, repeat: int) -> dict[str, Any]:
    months = {"from": f"{year}-01", "to": f"{year}-12"}
    queries: dict[str, tuple[str, dict[str, str]]] = {
        f"bookings_by_{by}": ("bookings", {"by": by}) for by in ("day", "month", "department", "doctor", "channel")
    }
    queries |= {
        "sessions": ("sessions", {}), "payments": ("payments", {}),
        "bookings_by_doctor_one_department": ("bookings", {"by": "doctor", "department": department}),
        "bookings_by_day_one_doctor": ("bookings", {"by": "day", "doctor": doctor}),
        "bookings_by_day_one_channel": ("bookings", {"by": "day", "channel": "app"}),
        "payments_one_channel": ("payments", {"channel": "app"}),
    }
    headers = bench.admin()
    p99: dict[str, float | None] = {}
    p50: dict[str, float | None] = {}
    with httpx.Client(base_url=bench.url, headers=headers, timeout=60) as http:
        for name, (what, extra) in queries.items():
            samples = []
            for _ in range(repeat):
                started = time.perf_counter()
                response = http.get(f"/api/v1/admin/statistics/{what}", params={**months, **extra})
                samples.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"{name}: {response.status_code} {response.text[:200]}")
            samples.sort()
            p99[name], p50[name] = rounded(percentile(samples, 99)), rounded(percentile(samples, 50))
            note(f"web: {name} p50 {p50[name]} ms, p99 {p99[name]} ms")
    return {"stats_p99_ms": max(v for v in p99.values() if v is not None), "stats_p99_ms_by_query": p99,
            "stats_p50_ms_by_query": p50}


def measure_home(bench: Bench, runs: int) -> dict[str, Any]:
    """``home_js_css_kb`` (one unthrottled load) and ``fcp_ms`` (``runs`` loads under Fast 3G)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise SystemExit("scripts/bench web: needs Playwright (.venv with the [test] extra)") from None
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"scripts/bench web: needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    if httpx.get(bench.url + "/h5/", timeout=30).status_code != 200:
        raise SystemExit("scripts/bench web: the hub serves no /h5/ page: build web/dist first (./scripts/serve or"
                         " ./scripts/test build it)")
    patient = bench.accounts.ensure(1, "patient")[0]
    session = {"token": patient.token, "account": {"id": patient.id, "name": "压测患者", "roles": ["patient"]}}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            context = browser.new_context(**PHONE)
            page = context.new_page()
            page.goto(bench.url + "/h5/login")
            page.evaluate("s => localStorage.setItem('carehub.h5.session', JSON.stringify(s))", session)
            page.close()
            # what the home page loads: every script and stylesheet, its route's lazy chunks included
            page = context.new_page()
            bodies: dict[str, bytes] = {}

            def keep(response: Any) -> None:
                if response.request.resource_type in ("script", "stylesheet") and response.ok:
                    bodies[response.url] = response.body()

            page.on("response", keep)
            page.goto(bench.url + "/h5/", wait_until="networkidle")
            page.wait_for_function("document.querySelector('#app') && document.querySelector('#app').children.length")
            if "/login" in page.url:
                raise RuntimeError("the home page sent the bench patient to the sign-in page")
            page.close()
            files = {urllib.parse.urlsplit(u).path: len(gzip.compress(b, 9)) for u, b in bodies.items()}
            for path, size in sorted(files.items(), key=lambda kv: -kv[1]):
                note(f"web: home loads {path} ({size / 1024:.1f} KiB gzip)")
            fcps = []
            for _ in range(runs):
                page = context.new_page()
                cdp = context.new_cdp_session(page)
                cdp.send("Network.enable")
                cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
                cdp.send("Network.emulateNetworkConditions", FAST_3G)
                page.goto(bench.url + "/h5/", wait_until="load", timeout=120_000)
                fcp = page.wait_for_function(
                    "() => { const e = performance.getEntriesByName('first-contentful-paint')[0];"
                    " return e ? e.startTime : null }", timeout=120_000).json_value()
                fcps.append(round(float(fcp), 1))
                page.close()
            note(f"web: first contentful paint under Fast 3G: {fcps} ms")
        finally:
            browser.close()
    return {"home_js_css_kb": round(sum(files.values()) / 1024, 1), "home_files": len(files),
            "fcp_ms": round(statistics.median(fcps), 1), "fcp_runs_ms": fcps}


def run(bench: Bench) -> None:
    args = bench.args
    result = bench.base("web")
    result |= measure_home(bench, args.fcp_runs)
    dsn = args.database_url or os.environ.get("CAREHUB_DATABASE_URL") or embedded_database_url(bench)
    if not dsn:
        raise SystemExit("scripts/bench web: the statistics part writes bookings into the hub's database: give"
                         " --database-url (or CAREHUB_DATABASE_URL), or let the bench start its own hub")
    year = dt.date.today().year - 1
    note(f"web: writing {args.stats_bookings:,} bookings of {year} into the hub's database")
    made = asyncio.run(generate(dsn, bench.run, args.stats_bookings, year))
    result |= {"stats_bookings": made["bookings"], "stats_year": year, "stats_generate_s": made["seconds"]}
    result |= measure_statistics(bench, year, made["department"], made["doctor"], args.stats_repeat)
    emit(result)


def add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("web (the patient home page, the admin statistics)")
    group.add_argument("--fcp-runs", type=int, default=5, help="web: page loads under Fast 3G (default 5)")
    group.add_argument("--stats-bookings", type=int, default=1_000_000,
                       help="web: bookings generated for the statistics (default 1,000,000)")
    group.add_argument("--stats-repeat", type=int, default=20, help="web: runs of each statistics query (default 20)")
    group.add_argument("--database-url", default=None,
                       help="web: the hub's database (default CAREHUB_DATABASE_URL, else the started hub's)")
