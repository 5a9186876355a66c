"""``./scripts/bench``'s command line: every command the benchmark docs quote still parses."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from carehub.bots.bench.cli import MODES, parse_args

DOCS = sorted((Path(__file__).resolve().parents[2] / "docs").glob("benchmarks*.md"))


def _quoted_commands() -> list[str]:
    """``./scripts/bench ...`` in inline code (which may wrap) and in fenced blocks (``#`` comments cut)."""
    commands: list[str] = []
    for doc in DOCS:
        text = doc.read_text()
        fenced = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)
        for block in fenced:
            for line in block.splitlines():
                if line.startswith("./scripts/bench"):
                    commands.append(line.split("#", 1)[0])
        prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.M | re.S)
        commands += re.findall(r"`(\./scripts/bench[^`]*)`", prose, flags=re.S)
    return [" ".join(c.split()) for c in commands]


COMMANDS = sorted(set(_quoted_commands()))


def test_the_docs_quote_bench_commands() -> None:
    assert len(COMMANDS) > 20


@pytest.mark.parametrize("command", COMMANDS)
def test_a_quoted_bench_command_parses(command: str) -> None:
    words = shlex.split(re.sub(r"<[^>]+>", "http://127.0.0.1:8091", command))[1:]
    words = [w for w in words if w not in ("...", "[...]")]
    args = parse_args(words)
    assert args.name in MODES


def test_reconnect_takes_the_number_of_phones_and_a_hub_url() -> None:
    args = parse_args(["reconnect", "--conns", "10000", "--url", "http://127.0.0.1:8099"])
    assert (args.name, args.conns, args.url) == ("reconnect", [10000], "http://127.0.0.1:8099")
