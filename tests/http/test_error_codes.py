"""Every error code the hub, the actors and the domain packages raise has its HTTP status in one table."""

from __future__ import annotations

import ast
from pathlib import Path

from carehub.http.errors import STATUS

PACKAGE = Path(__file__).resolve().parents[2] / "carehub"
#: where errors with a code (HubError, Refusal, CareHubError and their subclasses) are raised
RAISING = ("hub", "actors", "outpatient", "identity", "directory", "errors.py")


def _codes(path: Path) -> set[str]:
    codes = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.keyword) and node.arg == "code" and isinstance(node.value, ast.Constant):
            codes.add(node.value.value)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                target = item.target if isinstance(item, ast.AnnAssign) else (
                    item.targets[0] if isinstance(item, ast.Assign) and len(item.targets) == 1 else None)
                value = getattr(item, "value", None)
                if isinstance(target, ast.Name) and target.id == "code" and isinstance(value, ast.Constant):
                    codes.add(value.value)
    return {c for c in codes if isinstance(c, str)}


def test_every_raised_code_has_a_status() -> None:
    raised: set[str] = set()
    for part in RAISING:
        root = PACKAGE / part
        for path in [root] if root.is_file() else sorted(root.rglob("*.py")):
            raised |= _codes(path)
    assert raised - set(STATUS) == set(), "add these codes to carehub/http/errors.py STATUS"
