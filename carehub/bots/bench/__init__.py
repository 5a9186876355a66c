"""CareHub's benchmark, ``./scripts/bench <mode> [--url http://HOST:PORT] [options]`` (docs/benchmarks.md).

Each result is ONE JSON line on stdout; progress, the rate curves and warnings go to stderr.

Like every bot, this talks to CareHub only over its public protocols (HTTP and ``/ws``). The
client work runs in separate OS processes (``--procs``), each with its own trio loop; the
coordinator (the ``scripts/bench`` process) only sends them commands and reads the hub's
``/metrics``. CPU seconds of every client process, of the hub, of PostgreSQL and of everything
else on the machine are read from ``/proc`` over each measurement window and reported with the
result, so one can see which was saturated.

Where things are:

| module | what |
| --- | --- |
| ``cli`` | the command line: modes, options, the hub started or found at ``--url`` |
| ``session`` | one run's context (``Bench``): accounts, worker pools, CPU windows, admin API, patients |
| ``hub`` | the hub the bench starts (and restarts), its ``/metrics`` |
| ``accounts`` | bench accounts through the admin API; staff sign-in with TOTP (pyotp) |
| ``patients`` | patients signed in by SMS code, face-checked for booking |
| ``wire`` | the lean ``/ws`` (RFC 6455) and HTTP/1.1 clients |
| ``worker`` | client worker processes: the command loop, connection groups, the pool |
| ``loadclient`` | the worker class made of every workload's commands |
| ``machine``, ``report`` | ``/proc`` readings; JSON lines and statistics |
| ``idle``, ``fanout``, ``durable``, ``ask`` | the hub workloads |
| ``release_burst``, ``queue`` | the outpatient workloads (issue #4) |
| ``reconnect`` | N phones back after a hub restart (issue #16) |
| ``web`` | the patient home page's weight and first paint (Fast 3G), statistics at 1,000,000 bookings (issue 17) |
| ``notify`` | a partner's notices through the WeChat/SMS/Alipay simulators, reconciled; kill -9 (issue 18) |

Each workload module holds both sides: a mixin of worker commands (``cmd_<name>``) and
``run(bench, ...)``, the coordinator's part that prints its JSON line.
"""

from .wire import client_frame

__all__ = ["client_frame"]
