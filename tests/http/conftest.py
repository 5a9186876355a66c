"""The HTTP tests use the shared server fixtures of tests/conftest.py (built in tests/servers.py)."""

from ..servers import Server, eventually, run_server

__all__ = ["Server", "eventually", "run_server"]
