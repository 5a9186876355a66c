"""The read pacer: frames arriving on many connections at once are read over short turns (docs/architecture.md)."""

from __future__ import annotations

import socket

import trio

from carehub.bots.bench import client_frame  # what the load client sends
from carehub.http.websocket import Flusher, ReadPacer, WebSocket
from carehub.hub.loop import loop_load

CONNECTIONS = 200


def socket_pair() -> tuple[socket.socket, trio.SocketStream]:
    """A client's end (a plain socket, written without waiting) and the server's stream."""
    client, server = socket.socketpair()
    return client, trio.SocketStream(trio.socket.from_stdlib_socket(server))


async def test_frames_arriving_on_many_connections_at_once_are_read_over_several_turns_while_other_work_moves(
) -> None:
    pacer = ReadPacer(turn_seconds=0.0, per_turn=10)  # every reader woken by the poll waits its turn
    flusher = Flusher()
    turns_with_reads: set[float] = set()
    received = 0
    other_steps = 0
    steps_before_last_frame = 0
    done = trio.Event()

    async def other_work() -> None:  # e.g. a booking's next step: one step per turn of the loop
        nonlocal other_steps
        while not done.is_set():
            other_steps += 1
            await trio.lowlevel.checkpoint()

    async def serve(ws: WebSocket) -> None:
        nonlocal received, steps_before_last_frame
        assert await ws.receive() == '{"op":"ping"}'
        turns_with_reads.add(loop_load().turn_started)
        received += 1
        if received == CONNECTIONS:
            steps_before_last_frame = other_steps
            done.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(flusher.run)
        await nursery.start(pacer.run)
        clients = []
        for _ in range(CONNECTIONS):
            client, server = socket_pair()
            clients.append(client)
            nursery.start_soon(serve, WebSocket(server, flusher, b"", pacer))
        await trio.sleep(0.05)  # every reader waits for its socket
        for client in clients:  # the release: every frame is there at once
            client.send(client_frame(b'{"op":"ping"}'))
        nursery.start_soon(other_work)
        with trio.fail_after(10):
            await done.wait()
        nursery.cancel_scope.cancel()
    for client in clients:
        client.close()
    assert received == CONNECTIONS
    assert len(turns_with_reads) >= CONNECTIONS // 10  # at most 10 a turn
    assert steps_before_last_frame >= CONNECTIONS // 10 - 1  # the other task had a step in (nearly) every turn
    assert pacer.paced >= CONNECTIONS - 10


async def test_a_paced_reader_whose_connection_closes_leaves_the_queue() -> None:
    pacer = ReadPacer(turn_seconds=0.0, per_turn=1)
    flusher = Flusher()
    async with trio.open_nursery() as nursery:
        await nursery.start(flusher.run)
        client, server = socket_pair()
        ws = WebSocket(server, flusher, b"", pacer)
        answers: list[str | bytes | None] = []

        async def serve() -> None:
            while (message := await ws.receive()) is not None:
                answers.append(message)
            answers.append(None)

        nursery.start_soon(serve)
        await trio.sleep(0.02)
        client.send(client_frame(b"one") + client_frame(b"two"))
        with trio.fail_after(5):
            while len(answers) < 2:
                await trio.sleep(0.01)
        client.close()
        with trio.fail_after(5):
            while answers[-1] is not None:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert answers == ["one", "two", None]
