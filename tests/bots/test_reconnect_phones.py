"""The reconnect bench's phones against a real hub: they come back after it restarts, resumed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import trio

from carehub.bots.bench.reconnect import ReconnectCommands
from carehub.bots.bench.report import merge_samples


async def test_phones_come_back_with_a_welcome_after_the_hub_restarts_on_the_same_port(
    server_factory: Callable[..., Any],
) -> None:
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:  # the phones live on while the hub goes away
            async with server_factory() as hub:
                tokens = [await hub.token(f"patient{i}") for i in (1, 2, 3)]
                port = httpx.URL(hub.base).port
                phones = ReconnectCommands(None, 0, hub.base, None)  # type: ignore[arg-type]  # no coordinator pipe
                phones.nursery = nursery
                opened = await phones.cmd_phones_open([(t, f"phone-{i}") for i, t in enumerate(tokens)])
                assert opened["ok"] == 3
            # the hub is gone: every phone was dropped; it comes back on the same port and database
            async with server_factory(port=port):
                while (await phones.cmd_phones_count())["back"] < 3:
                    await trio.sleep(0.05)
                collected = await phones.cmd_phones_collect()
                assert collected["connected"] == 3
                assert sum(collected["drops"].values()) == 3
                assert len(merge_samples([collected["auth"]])) == 3
                await phones.cmd_close("reconnect")
            nursery.cancel_scope.cancel()
