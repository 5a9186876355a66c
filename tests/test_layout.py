"""The shape of the package, checked: SQL only in ``carehub/storage``, every package fenced by the layers contract.

docs/architecture.md "Layers" explains both rules.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "carehub"

#: the methods of an asyncpg connection/pool (and of ``carehub.storage.db.Database``) that run SQL
SQL_METHODS = frozenset({"execute", "executemany", "fetch", "fetchrow", "fetchval", "copy_records_to_table",
                         "copy_to_table", "copy_from_query", "cursor", "prepare"})



def _sql_calls(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        node.lineno for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SQL_METHODS
    ]


def test_sql_runs_only_in_storage() -> None:
    found: dict[str, list[int]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(("carehub/storage/", "carehub/bots/")):
            continue
        lines = _sql_calls(path)
        if lines:
            found[rel] = lines
    assert not found, f"SQL outside carehub/storage (move it into a repository): {found}"


def _layer_names() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    names: set[str] = set()
    for contract in config["tool"]["importlinter"]["contracts"]:
        if contract["type"] == "layers":
            for layer in contract["layers"]:
                names.update(part.strip() for part in layer.replace(":", "|").split("|"))
    return names


def test_every_package_is_in_the_layers_contract() -> None:
    """A new domain package (or any module at the top of ``carehub``) must be given its place in the layers."""
    fenced = _layer_names() | {"carehub.bots"}  # bots have a contract of their own: they import nothing of ours
    top = {f"carehub.{p.name}" for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    top |= {f"carehub.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")}
    assert top - fenced == set(), "add these to the layers contract in pyproject.toml"


def test_every_cited_feature_id_is_one_the_hospital_asked_for() -> None:
    """A label like OUT-12 in code, tests, docs or pages names a function of docs/features.md (a wrong ID misleads)."""
    asked = set(re.findall(r"\b([A-Z]{2,5})-(\d+)\b", (ROOT / "docs" / "features.md").read_text(encoding="utf-8")))
    families = {family for family, _ in asked}
    wrong = []
    for folder, suffixes in ((PACKAGE, {".py"}), (ROOT / "tests", {".py"}), (ROOT / "docs", {".md"}),
                             (ROOT / "web" / "src", {".js", ".vue"}), (ROOT / "web" / "shared", {".js"})):
        for path in folder.rglob("*"):
            if path.suffix not in suffixes or "node_modules" in path.parts:
                continue
            for family, number in re.findall(r"\b([A-Z]{2,5})-(\d+)\b", path.read_text(encoding="utf-8")):
                if family in families and (family, number) not in asked:
                    wrong.append(f"{path.relative_to(ROOT)}: {family}-{number}")
    assert wrong == []
