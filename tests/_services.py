from __future__ import annotations
import os
from collections.abc import Callable
from pathlib import Path

def find_or_start_postgres(tmp_root: Path) -> tuple[str, Callable[[], None]]:
    return os.environ.get("CAREHUB_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"), lambda: None
