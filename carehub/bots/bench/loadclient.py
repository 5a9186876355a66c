"""The load client process: every workload's worker commands in one class, and its entry point."""

from __future__ import annotations

import multiprocessing.connection
import signal

import trio

from .ask import AskCommands
from .durable import DurableCommands
from .fanout import FanoutCommands
from .machine import raise_nofile_limit
from .notify import NotifyCommands
from .patients import PatientCommands
from .queue import QueueCommands
from .reconnect import ReconnectCommands
from .release_burst import BurstCommands


class LoadClient(FanoutCommands, DurableCommands, AskCommands, PatientCommands, BurstCommands, QueueCommands,
                 ReconnectCommands, NotifyCommands):
    """One client process; ``idle``'s commands (open, status, close) are :class:`.worker.WorkerBase`'s."""


def worker_main(conn: multiprocessing.connection.Connection, index: int, url: str, src: str | None) -> None:
    """A spawned client process: run the coordinator's commands until it says exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator stops us
    raise_nofile_limit()
    trio.run(LoadClient(conn, index, url, src).main)
