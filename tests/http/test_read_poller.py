"""The read poller: one task reads and runs the frames of every parked (signed-in) connection (docs/gateway.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from carehub.bots.bench import client_frame  # what the load client sends
from carehub.http.websocket import OP_CLOSE, Flusher, ReadPoller, WebSocket, close_frame

from .test_read_pacer import CONNECTIONS, Burst, socket_pair


@asynccontextmanager
async def running(per_turn: int = 64, sweep_seconds: float = 1.0) -> AsyncIterator[
        tuple[trio.Nursery, Flusher, ReadPoller]]:
    flusher, poller = Flusher(), ReadPoller(per_turn=per_turn, sweep_seconds=sweep_seconds)
    async with trio.open_nursery() as nursery:
        await nursery.start(flusher.run)
        await nursery.start(poller.run)
        yield nursery, flusher, poller
        nursery.cancel_scope.cancel()


async def until(condition: Callable[[], bool]) -> None:
    with trio.fail_after(5):
        while not condition():
            await trio.sleep(0.005)


async def test_frames_on_many_parked_connections_are_read_over_several_turns_while_other_work_moves() -> None:
    burst = Burst()

    def handler(message: str | bytes) -> bool:
        burst.got(message)
        return True

    async def serve(ws: WebSocket) -> None:
        while True:
            await ws.serve_parked(handler)
            if await ws.receive() is None:
                return

    async with running(per_turn=10) as (nursery, flusher, poller):
        for _ in range(CONNECTIONS):
            nursery.start_soon(serve, WebSocket(burst.connect(), flusher, b"", poller=poller))
        await trio.sleep(0.05)  # every connection is parked
        await burst.release(nursery)
    burst.close()
    assert burst.received == CONNECTIONS
    assert poller.reads == CONNECTIONS
    assert len(burst.turns_with_reads) >= CONNECTIONS // 10  # at most 10 a turn
    assert burst.steps_before_last_frame >= CONNECTIONS // 10 - 1  # the other task had a step in (nearly) every turn


async def test_a_message_the_handler_cannot_run_is_the_next_its_reader_receives_and_the_order_is_kept() -> None:
    ran: list[str | bytes] = []
    received: list[str | bytes | None] = []

    def handler(message: str | bytes) -> bool:
        if message == "wait":  # e.g. a resume, which reads the database
            return False
        ran.append(message)
        return True

    async with running() as (nursery, flusher, poller):
        client, server = socket_pair()
        ws = WebSocket(server, flusher, b"", poller=poller)

        async def serve() -> None:
            while True:
                await ws.serve_parked(handler)
                message = await ws.receive()
                received.append(message)
                if message is None:
                    return
                ran.append(f"task:{message!s}")

        nursery.start_soon(serve)
        await trio.sleep(0.02)
        client.send(client_frame(b"one") + client_frame(b"wait") + client_frame(b"two"))
        await until(lambda: len(ran) == 3)
        client.send(client_frame(b"three"))  # the reader has caught up: parked again
        await until(lambda: len(ran) == 4)
        client.close()
        await until(lambda: received[-1:] == [None])
    # what came after "wait" in the same read waited for it, and was run by the task too
    assert ran == ["one", "task:wait", "task:two", "three"]
    assert ws.close_code == 1006  # lost without a close frame


async def test_a_close_frame_on_a_parked_connection_hands_it_back_and_is_answered() -> None:
    async with running() as (nursery, flusher, poller):
        client, server = socket_pair()
        ws = WebSocket(server, flusher, b"", poller=poller)
        ended = trio.Event()

        async def serve() -> None:
            await ws.serve_parked(lambda message: True)
            assert await ws.receive() is None
            ended.set()

        nursery.start_soon(serve)
        await trio.sleep(0.02)
        client.send(client_frame(close_frame(1000)[2:], OP_CLOSE))
        with trio.fail_after(5):
            await ended.wait()
        assert ws.close_code == 1000
        client.settimeout(5)
        assert client.recv(16)[:1] == b"\x88"  # our close frame answered theirs
        client.close()


async def test_an_error_in_one_connections_handler_is_raised_in_its_task_and_the_others_are_still_read() -> None:
    errors: list[Exception] = []
    others: list[str | bytes] = []

    def broken(message: str | bytes) -> bool:
        raise ValueError("a bug")

    def fine(message: str | bytes) -> bool:
        others.append(message)
        return True

    async def serve(ws: WebSocket, handler: Callable[[str | bytes], bool]) -> None:
        try:
            while True:
                await ws.serve_parked(handler)
                if await ws.receive() is None:
                    return
        except ValueError as err:
            errors.append(err)

    async with running() as (nursery, flusher, poller):
        bad_client, bad_server = socket_pair()
        good_client, good_server = socket_pair()
        nursery.start_soon(serve, WebSocket(bad_server, flusher, b"", poller=poller), broken)
        nursery.start_soon(serve, WebSocket(good_server, flusher, b"", poller=poller), fine)
        await trio.sleep(0.02)
        bad_client.send(client_frame(b"boom"))
        await until(lambda: bool(errors))
        good_client.send(client_frame(b"still here"))
        await until(lambda: bool(others))
    assert str(errors[0]) == "a bug"
    assert others == ["still here"]
    bad_client.close()
    good_client.close()


async def test_a_parked_reader_whose_wait_is_cancelled_is_no_longer_read_for() -> None:
    calls: list[str | bytes] = []

    def handler(message: str | bytes) -> bool:
        calls.append(message)
        return True

    async with running() as (_nursery, flusher, poller):
        client, server = socket_pair()
        ws = WebSocket(server, flusher, b"", poller=poller)
        with trio.move_on_after(0.05):  # e.g. the connection's close() cancelling its wait
            await ws.serve_parked(handler)
        client.send(client_frame(b"late"))
        await trio.sleep(0.05)
        assert calls == [] and poller.reads == 0
        assert await ws.receive() == "late"  # the reader task reads it itself
        client.close()


async def test_readers_parked_when_the_poller_stops_go_back_to_reading_for_themselves() -> None:
    got: list[str | bytes | None] = []
    flusher, poller = Flusher(), ReadPoller()
    client, server = socket_pair()
    ws = WebSocket(server, flusher, b"", poller=poller)
    async with trio.open_nursery() as outer:
        await outer.start(flusher.run)

        async def serve() -> None:
            await ws.serve_parked(lambda message: True)
            got.append(await ws.receive())

        async with trio.open_nursery() as inner:
            await inner.start(poller.run)
            outer.start_soon(serve)
            await trio.sleep(0.02)
            inner.cancel_scope.cancel()  # the poller stops (the hub shuts down)
        client.send(client_frame(b"after"))
        await until(lambda: bool(got))
        outer.cancel_scope.cancel()
    assert got == ["after"]
    client.close()



async def test_a_parked_connection_silent_for_its_idle_time_is_handed_back_as_idle_and_a_chatty_one_stays() -> None:
    async with running(sweep_seconds=0.05) as (nursery, flusher, poller):
        silent_client, silent_server = socket_pair()
        chatty_client, chatty_server = socket_pair()
        silent = WebSocket(silent_server, flusher, b"", poller=poller)
        chatty = WebSocket(chatty_server, flusher, b"", poller=poller)
        results: dict[str, bool] = {}

        async def serve(name: str, ws: WebSocket) -> None:
            results[name] = await ws.serve_parked(lambda message: True, idle_seconds=0.3)

        started = trio.current_time()
        nursery.start_soon(serve, "silent", silent)
        nursery.start_soon(serve, "chatty", chatty)
        for _ in range(8):  # 0.8 s, a frame every 0.1 s
            await trio.sleep(0.1)
            chatty_client.send(client_frame(b'{"op":"ping"}'))
        assert results == {"silent": True}
        assert 0.3 <= trio.current_time() - started
        silent_client.close()
        chatty_client.close()
