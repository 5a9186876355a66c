"""Runtime support for the event loop: how busy it is, and a garbage collector that waits for quiet moments.

Below every other package (it imports nothing of CareHub): the hub's effects, the push channel's
heartbeat pass and the transport's readers all ask the same :class:`LoopLoad`; readers that hold
work back for a later turn register it with :meth:`LoopLoad.hold`. docs/gateway.md, "Loop load"
and "Collector", says why each exists.

| module | what |
| --- | --- |
| ``load.py`` | :class:`LoopLoad` (a Trio instrument: turn start, running share, work held back), :class:`Backlog` |
| ``collector.py`` | :class:`Collector`: Python's cyclic collections at the loop's quiet moments |
"""

from .collector import Collector
from .load import Backlog, LoopLoad, loop_load

__all__ = ["Backlog", "Collector", "LoopLoad", "loop_load"]
