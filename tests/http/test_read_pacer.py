"""The read pacer: frames arriving on many connections at once are read over short turns (docs/gateway.md)."""

from __future__ import annotations

import socket

import trio

from carehub.bots.bench import client_frame  # what the load client sends
from carehub.eventloop import loop_load
from carehub.http.websocket import Flusher, ReadPacer, WebSocket

CONNECTIONS = 200


def socket_pair() -> tuple[socket.socket, trio.SocketStream]:
    """A client's end (a plain socket, written without waiting) and the server's stream."""
    client, server = socket.socketpair()
    return client, trio.SocketStream(trio.socket.from_stdlib_socket(server))


class Burst:
    """CONNECTIONS clients send a frame at one instant while another task takes one step per turn of the loop."""

    def __init__(self) -> None:
        self.turns_with_reads: set[float] = set()
        self.received = 0
        self.other_steps = 0
        self.steps_before_last_frame = 0
        self.done = trio.Event()
        self.clients: list[socket.socket] = []

    def got(self, message: str | bytes | None) -> None:
        """A server side read the frame."""
        assert message == '{"op":"ping"}'
        self.turns_with_reads.add(loop_load().turn_started)
        self.received += 1
        if self.received == CONNECTIONS:
            self.steps_before_last_frame = self.other_steps
            self.done.set()

    def connect(self) -> trio.SocketStream:
        client, server = socket_pair()
        self.clients.append(client)
        return server

    async def other_work(self) -> None:  # e.g. a booking's next step: one step per turn of the loop
        while not self.done.is_set():
            self.other_steps += 1
            await trio.lowlevel.checkpoint()

    async def release(self, nursery: trio.Nursery) -> None:
        """Every frame is there at once; returns when the last one was read."""
        for client in self.clients:
            client.send(client_frame(b'{"op":"ping"}'))
        nursery.start_soon(self.other_work)
        with trio.fail_after(10):
            await self.done.wait()

    def close(self) -> None:
        for client in self.clients:
            client.close()


async def test_frames_arriving_on_many_connections_at_once_are_read_over_several_turns_while_other_work_moves(
) -> None:
    pacer = ReadPacer(turn_seconds=0.0, per_turn=10)  # every reader woken by the poll waits its turn
    flusher = Flusher()
    burst = Burst()

    async def serve(ws: WebSocket) -> None:
        burst.got(await ws.receive())

    async with trio.open_nursery() as nursery:
        await nursery.start(flusher.run)
        await nursery.start(pacer.run)
        for _ in range(CONNECTIONS):
            nursery.start_soon(serve, WebSocket(burst.connect(), flusher, b"", pacer))
        await trio.sleep(0.05)  # every reader waits for its socket
        await burst.release(nursery)
        nursery.cancel_scope.cancel()
    burst.close()
    assert burst.received == CONNECTIONS
    assert len(burst.turns_with_reads) >= CONNECTIONS // 10  # at most 10 a turn
    assert burst.steps_before_last_frame >= CONNECTIONS // 10 - 1  # the other task had a step in (nearly) every turn
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
