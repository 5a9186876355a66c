"""The WebSocket gateway at ``/ws`` (protocol: docs/protocol.md) and the ``/ws/echo`` route.

Both run on CareHub's own WebSocket server side (``carehub/http/websocket/``: one task per connection,
frames written by one flusher for the whole hub), not through Hypercorn and ASGI; ``/ws/echo`` runs on
exactly the stack ``/ws`` does.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from collections.abc import Sequence
from typing import Any, assert_never, cast

import trio

from carehub.channels.push import Session, encode_bytes
from carehub.errors import CareHubError
from carehub.hub import (
    BadMessage,
    Caller,
    HubError,
    Outbound,
    Priority,
    UnknownActorKind,
)
from carehub.identity import AuthFailed, Principal, may_publish, may_subscribe

from ..context import Services
from ..errors import ApiError, from_error
from ..routing import Command, RequestContext
from ..websocket import OP_BINARY, OP_TEXT, Upgrade, WebSocket, frame
from . import frames as wire_frames
from .frames import (
    Ack,
    Auth,
    Bye,
    Call,
    ClientFrame,
    Error,
    FrameDecoder,
    FrameError,
    Ping,
    Pong,
    Publish,
    Reply,
    Resume,
    ServerPong,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
    Welcome,
    wire,
)

log = logging.getLogger("carehub.ws")

PROTOCOL_VERSION = 1
SUBPROTOCOL_JSON = "carehub.v1.json"
SUBPROTOCOL_MSGPACK = "carehub.v1.msgpack"

# close codes (docs/protocol.md)
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_RESTART = 1012
CLOSE_AUTH = 4001
CLOSE_IDLE = 4002
CLOSE_REVOKED = 4003
CLOSE_SLOW = 4008

MAX_BAD_FRAMES = 20
MAX_CALLS_IN_FLIGHT = 16
MAX_TOPICS = 100
AUTH_TIMEOUT = 10.0
STREAM_BATCH = 200


def _error(code: str, message: str, ref: Any = None) -> Outbound:
    return Outbound(wire(Error(code, message) if ref is None else Error(code, message, ref)))


class Connection:
    """One client connection: reads frames, runs them, writes the session's buffer."""

    def __init__(self, services: Services, ws: WebSocket, peer: str, codec: str) -> None:
        self.s = services
        self.gw = services.gateway
        self.ws = ws
        self.codec = codec
        self.wire_key = f"{codec}/ws"
        self.opcode = OP_TEXT if codec == "json" else OP_BINARY
        self.decoder = FrameDecoder(codec)
        cfg = services.config
        self.session = Session(codec=codec, limit=cfg.ws_send_buffer, stuck_seconds=cfg.ws_stuck_seconds)
        self.principal: Principal | None = None
        self.bad_frames = 0
        self.calls = 0
        self.close_code: int | None = None
        self.close_reason = ""
        self.nursery: trio.Nursery | None = None
        self._timer: trio.CancelScope | None = None
        self.peer = peer

    # ---- lifecycle ----------------------------------------------------------------------

    async def run(self) -> None:
        self.s.push.add(self.session)
        self.gw.connections[self.session] = self
        self.session.notify = self.ws.wake
        self.ws.source = self._frames
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                await self._reader()
                nursery.cancel_scope.cancel()
        finally:
            self.s.push.remove(self.session)
            self.gw.connections.pop(self.session, None)
            self.session.close()
            for topic in self.session.topics:
                self.s.hub.topics.unsubscribe(topic, self.session)
            await self._save_cursor()

    def close(self, code: int, reason: str, bye: Outbound | None = None) -> None:
        """Close after the frames already queued (an error frame saying why goes first).

        ``bye`` is the last frame (default: a ``bye`` with the code and reason).
        """
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
            self.session.offer(bye or Outbound(wire(Bye(code, reason))))
            self.session.close()
            if self._timer is not None:
                self._timer.cancel()  # the reader stops waiting for the client

    def kick(self, code: int, reason: str) -> None:
        """Close now, dropping what is queued (slow consumer, revoked session)."""
        self.close_code = code
        self.close_reason = reason
        self.session.close()
        self.session.discard()
        self.ws.source = None
        if self.nursery is not None:
            self.nursery.cancel_scope.cancel()

    def _frames(self) -> list[bytes]:
        """The session's queued frames as WebSocket frames (each built once per codec, whatever the fan-out)."""
        key = self.wire_key
        out = []
        for item in self.session.take():
            data = item.encoded.get(key)
            if data is None:
                try:
                    data = item.encoded[key] = frame(encode_bytes(item, self.codec), self.opcode)
                except (TypeError, ValueError, OverflowError) as err:
                    # e.g. binary data a MessagePack client published, for a JSON subscriber: this one
                    # frame cannot be written to this connection; everything else still is
                    log.warning("dropped a %s frame for %s that %s cannot carry: %s",
                                item.frame.get("op"), self.peer, self.codec, err)
                    continue
            out.append(data)
        return cast(list[bytes], out)

    async def _reader(self) -> None:
        """Read and run frames until the connection closes, or its auth or idle time runs out.

        Signed in, the connection parks with the read poller, which reads and runs its frames and
        closes it idle; the task runs only the frames that wait (auth, resume; docs/gateway.md,
        "Read poller"). Before that, the ``auth`` frame must arrive within ``AUTH_TIMEOUT`` of the
        connection opening (4001); the time the hub then takes to check the token and send the
        stream does not count against the client. Only the wait for a frame has a deadline.
        """
        idle = self.s.config.ws_idle_timeout_seconds
        ws = self.ws
        auth_deadline = trio.current_time() + AUTH_TIMEOUT
        while self.close_code is None:
            if self.principal is not None and ws.can_park():
                with trio.CancelScope() as parked:  # close() and kick() end it
                    self._timer = parked
                    idled = await ws.serve_parked(self._run_polled, idle)
                if parked.cancelled_caught or self.close_code is not None:
                    return
                if idled:
                    self.close(CLOSE_IDLE, "连接空闲超时 (idle timeout)")
                    return
            deadline = auth_deadline if self.principal is None else trio.current_time() + idle
            with trio.CancelScope(deadline=deadline) as timer:  # close() and kick() end it too
                self._timer = timer
                message = await ws.receive()
            self._timer = None
            if self.close_code is not None:
                return
            if timer.cancelled_caught:
                if self.principal is None:
                    self.close(CLOSE_AUTH, "未在规定时间内完成认证 (authenticate within 10 s)")
                else:
                    self.close(CLOSE_IDLE, "连接空闲超时 (idle timeout)")
                return
            if message is None:
                self.close_code = ws.close_code or 1005
                return
            try:
                frame = self._decode(message)
                await self._dispatch(frame)
            except FrameError as err:
                if not self._bad_frame(err):
                    return

    def _run_polled(self, message: str | bytes) -> bool:
        """Run a message the read poller read, in its task; False when it needs the reader's (auth, resume)."""
        try:
            frame = self._decode(message)
            if not self._dispatch_now(frame):
                return False
        except FrameError as err:
            return self._bad_frame(err)
        return self.close_code is None

    def _bad_frame(self, err: FrameError) -> bool:
        """Answer a bad frame with an error frame; False once there were too many (the connection closes)."""
        self.bad_frames += 1
        self.gw.stats.bad_frames += 1
        self.session.offer(_error(err.code, err.message))
        if self.bad_frames >= MAX_BAD_FRAMES:
            self.close(CLOSE_POLICY, "错误帧过多 (too many bad frames)")
            return False
        return True

    # ---- frames ---------------------------------------------------------------------------

    def _decode(self, message: str | bytes) -> ClientFrame:
        size = len(message.encode()) if isinstance(message, str) else len(message)
        limit = self.s.config.ws_max_frame_bytes
        if size > limit:
            self.close(CLOSE_TOO_BIG, f"帧过大: {size} 字节, 上限 {limit}")
            raise FrameError("frame_too_large", f"frame of {size} bytes exceeds {limit}")
        return self.decoder.decode(message, self.principal is not None)

    async def _dispatch(self, frame: ClientFrame) -> None:
        """Run a frame, waiting for what it waits for (auth, resume: the database)."""
        if self._dispatch_now(frame):
            return
        if isinstance(frame, Auth):
            await self._auth(frame)
        elif isinstance(frame, Resume):
            await self._resume(frame.after)

    def _dispatch_now(self, frame: ClientFrame) -> bool:
        """Run a frame that needs no waiting; False for the two that wait (auth, resume: see ``_dispatch``)."""
        principal = self.principal
        match frame:
            case wire_frames.Command() if principal is not None:
                self._command(frame)
            case Ack() if principal is not None:
                self._ack(frame)
            case Ping(t=t):
                self.session.offer(Outbound(wire(ServerPong(t))))
            case Pong():
                pass
            case Auth():
                if principal is not None:
                    raise FrameError("already_authenticated", "this connection is already authenticated")
                return False
            case _ if principal is None:
                op = type(frame).__struct_config__.tag
                raise FrameError("not_authenticated", f"send an auth frame before {op!r}")
            case Call():
                self._call(frame)
            case Resume():
                return False
            case Subscribe():
                self._subscribe(frame)
            case Unsubscribe():
                self._unsubscribe(frame)
            case Publish():
                self._publish(frame)
            case wire_frames.Command() | Ack():
                raise AssertionError("signed in: run above")
            case _:
                assert_never(frame)
        return True

    async def _auth(self, frame: Auth) -> None:
        device, resume_after = frame.device, frame.resume_after
        try:
            principal = await self.s.identity.authenticate(frame.token)
        except AuthFailed as err:
            self.session.offer(_error("auth_failed", str(err)))
            self.close(CLOSE_AUTH, "认证失败 (authentication failed)")
            return
        except HubError as err:
            raise FrameError(err.code, err.message) from None
        except Exception as err:
            raise FrameError("storage_unavailable", f"could not check the token now: {err}") from None
        self.principal = principal
        self.session.device = device
        self.session.roles = principal.roles
        self.s.push.bind(self.session, principal.account_id)
        # one read for every connection signing in now (a reconnect storm: docs/gateway.md)
        first, last, stored = await self.gw.streams.open(principal.account_id, device)
        if resume_after is None:
            # the node's own memory first: a phone that reconnects at once may beat the old
            # connection's cursor write (or its close may not even be noticed yet)
            cursor = max(self.s.push.acked(principal.account_id, device), stored)
            resume_after = cursor if cursor else last
        self.session.acked_seq = self.session.acked_saved = min(resume_after, last)
        self.session.offer(Outbound(wire(Welcome(
            protocol=PROTOCOL_VERSION,
            account={"id": principal.account_id, "name": principal.display_name, "roles": sorted(principal.roles)},
            stream={"first_seq": first, "last_seq": last, "resume_after": resume_after},
            heartbeat_ms=int(self.s.config.ws_heartbeat_seconds * 1000),
            idle_timeout_ms=int(self.s.config.ws_idle_timeout_seconds * 1000),
            reconnect={"min_ms": 500, "max_ms": 15000},
        ))))
        await self._resume(resume_after)

    async def _resume(self, after: int | None) -> None:
        assert self.principal is not None
        if after is None:
            after = self.session.acked_seq
        session = self.session
        session.start_catch_up(after)
        backlog = []
        cursor = after
        while True:
            batch = await self.s.store.read_stream(self.principal.account_id, cursor, STREAM_BATCH)
            if len(batch) < STREAM_BATCH:
                backlog.extend(batch)
                break
            # a long backlog goes out in batches as the client takes them
            session.caught_up(batch)
            session.streaming = False
            cursor = batch[-1].seq
            while not session.has_room() and not session.closed:
                await trio.sleep(0.01)
        session.caught_up(backlog)

    def _ack(self, frame: Ack) -> None:
        """Remember the device's place in the stream; an ack past what this connection sent is refused.

        The cursor never passes the last message sent here (a device that acked ahead would skip,
        on its next connection, messages it never had); the client hears why (docs/protocol.md).
        """
        session = self.session
        seq = frame.seq
        if seq > session.last_sent_seq:
            session.offer(_error("ack_beyond_stream", f"ack {seq} is past the last message sent on this connection"
                                 f" ({session.last_sent_seq}); the cursor stays there", seq))
            seq = session.last_sent_seq
        if seq > session.acked_seq:
            session.acked_seq = seq
            self.s.push.note_ack(session)

    async def _save_cursor(self) -> None:
        session = self.session
        if session.account_id is None or session.acked_seq <= session.acked_saved:
            return
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            try:
                await self.s.store.save_cursor(session.account_id, session.device, session.acked_seq)
                session.acked_saved = session.acked_seq
            except Exception as err:
                log.warning("could not save the stream cursor of %s: %s", session.account_id, err)

    def _no_room_for(self, ref: Any) -> bool:
        """True (and the caller told so) when the connection's calls and commands in flight are at the limit."""
        if self.calls < MAX_CALLS_IN_FLIGHT:
            return False
        self.session.offer(
            self._reply_error(ref, "too_many_calls", f"at most {MAX_CALLS_IN_FLIGHT} calls may be in flight")
        )
        return True

    def _call(self, frame: Call) -> None:
        ref, to, type_name = frame.id, frame.to, frame.type
        assert self.principal is not None and self.nursery is not None
        if not self.principal.can("actor.call"):
            self.session.offer(self._reply_error(ref, "forbidden", "this account may not call actors"))
            return
        if self._no_room_for(ref):
            return
        try:
            address, message = self.s.hub.parse(to, type_name, frame.body)
        except (BadMessage, UnknownActorKind) as err:
            self.session.offer(self._reply_error(ref, err.code, err.message))
            return
        caller = Caller(self.principal.account_id, self.principal.caller_roles)
        try:
            allowed = self.s.hub.authorize(address, message, caller)
        except HubError as err:
            self.session.offer(self._reply_error(ref, err.code, err.message))
            return
        if not allowed:
            self.session.offer(self._reply_error(ref, "forbidden", f"you may not send {type_name} to {to}"))
            return
        self.calls += 1
        self.nursery.start_soon(self._run_call, ref, address, message, caller)

    async def _run_call(self, ref: Any, address: str, message: Any, caller: Caller) -> None:
        try:
            result = await self.s.hub.ask(address, message, caller=caller)
        except HubError as err:
            self.session.offer(self._reply_error(ref, err.code, err.message, retryable=err.retryable))
        else:
            self.session.offer(Outbound(wire(Reply(ref, True, result=result))))
        finally:
            self.calls -= 1

    def _command(self, frame: wire_frames.Command) -> None:
        ref, name = frame.id, frame.name
        command = self.gw.commands.get(name)
        if command is None:
            self.session.offer(self._reply_error(ref, "unknown_command", f"no command {name[:64]!r}", status=404))
            return
        assert self.nursery is not None and self.principal is not None
        ctx = RequestContext(self.principal)
        try:
            payload = command.checked(self.principal, frame.body)
        except ApiError as err:
            self.session.offer(self._command_error(ref, err))
            return
        if self._no_room_for(ref):
            return
        self.calls += 1
        if command.admit is None:
            self._start_command(ref, command, ctx, payload, None)
            return
        waiter = _CommandWaiter(self, ref, command, ctx, payload)
        try:  # the command may wait without a task, and be answered without one (e.g. "full" in a release)
            command.admit(ctx, payload, waiter)
        except ApiError as err:
            self._refuse_command(ref, err)
        except (CareHubError, HubError) as err:
            self._refuse_command(ref, from_error(err))

    def _start_command(self, ref: Any, command: Command, ctx: RequestContext, payload: Any, ticket: object) -> bool:
        """Start the command's task (False, and the call no longer counted, once the connection is closing)."""
        if self.close_code is None and self.nursery is not None:
            try:
                self.nursery.start_soon(self._run_command, ref, command, ctx, payload, ticket)
                return True
            except RuntimeError:  # the connection's nursery is closing
                pass
        self.calls -= 1
        return False

    def _refuse_command(self, ref: Any, err: ApiError) -> None:
        self.calls -= 1
        self.session.offer(self._command_error(ref, err))

    def _command_error(self, ref: Any, err: ApiError) -> Outbound:
        return self._reply_error(ref, err.code, err.message, retryable=err.status in (429, 503), status=err.status)

    async def _run_command(self, ref: Any, command: Command, ctx: RequestContext, payload: Any,
                           ticket: object) -> None:
        try:
            answer = await command.run(ctx, payload, ticket)
        except ApiError as err:
            self.session.offer(self._command_error(ref, err))
        except Exception:
            log.exception("command %s failed", command.spec.command)
            self.session.offer(
                self._reply_error(ref, "internal_error", "服务器内部错误 (logged for the operators)", status=500)
            )
        else:
            self.session.offer(Outbound(wire(Reply(ref, True, status=answer.status, result=answer.payload))))
        finally:
            self.calls -= 1

    @staticmethod
    def _reply_error(
        ref: Any, code: str, message: str, *, retryable: bool = False, status: int | None = None
    ) -> Outbound:
        error: dict[str, Any] = {"code": code, "message": message, "retryable": retryable}
        if status is not None:
            error["status"] = status
        return Outbound(wire(Reply(ref, False, error=error)))

    def _subscribe(self, frame: Subscribe) -> None:
        topic = frame.topic
        assert self.principal is not None
        if not may_subscribe(self.principal.permissions, self.principal.account_id, topic):
            self.session.offer(_error("forbidden", f"you may not subscribe to {topic!r}", topic))
            return
        if len(self.session.topics) >= MAX_TOPICS and topic not in self.session.topics:
            self.session.offer(_error("too_many_topics", f"at most {MAX_TOPICS} topics per connection", topic))
            return
        self.session.topics.add(topic)
        self.s.hub.topics.subscribe(topic, self.session)
        self.session.offer(Outbound(wire(Subscribed(topic))))
        if topic == "ops":
            self.gw.ops.publish_now()

    def _unsubscribe(self, frame: Unsubscribe) -> None:
        self.session.topics.discard(frame.topic)
        self.s.hub.topics.unsubscribe(frame.topic, self.session)
        self.session.offer(Outbound(wire(Unsubscribed(frame.topic))))

    def _publish(self, frame: Publish) -> None:
        topic, ref = frame.topic, frame.id
        assert self.principal is not None
        if not may_publish(self.principal.permissions, topic):
            if ref is not None:
                self.session.offer(self._reply_error(ref, "forbidden", f"you may not publish to {topic!r}"))
            else:
                self.session.offer(_error("forbidden", f"you may not publish to {topic!r}", topic))
            return
        count = self.s.hub.topics.publish(
            topic, frame.type, frame.body if frame.body is not None else {},
            coalesce=frame.coalesce if isinstance(frame.coalesce, str) else None,
            priority=Priority.CRITICAL if frame.critical is True else Priority.LOW,
        )
        if ref is not None:
            self.session.offer(Outbound(wire(Reply(ref, True, result={"subscribers": count}))))


class _CommandWaiter:
    """A command waiting for its admission without a task (the routing's ``CommandWaiter``): started or answered
    on this connection when the domain says."""

    __slots__ = ("command", "conn", "ctx", "payload", "ref")

    def __init__(self, conn: Connection, ref: Any, command: Command, ctx: RequestContext, payload: Any) -> None:
        self.conn = conn
        self.ref = ref
        self.command = command
        self.ctx = ctx
        self.payload = payload

    def admitted(self, ticket: object) -> bool:
        return self.conn._start_command(self.ref, self.command, self.ctx, self.payload, ticket)

    def refused(self, err: ApiError) -> None:
        self.conn._refuse_command(self.ref, err)


def choose_codec(offered: Sequence[str]) -> tuple[str, str | None]:
    if SUBPROTOCOL_MSGPACK in offered:
        return "msgpack", SUBPROTOCOL_MSGPACK
    if SUBPROTOCOL_JSON in offered:
        return "json", SUBPROTOCOL_JSON
    return "json", None


def _peer(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except (OSError, ValueError):
        return "?"
    return f"{host}:{port}"


async def websocket_gateway(services: Services, stream: trio.SocketStream, upgrade: Upgrade) -> None:
    """``/ws``: accept the upgrade and run the connection until either side closes it."""
    codec, subprotocol = choose_codec(upgrade.subprotocols)
    await stream.send_all(upgrade.accept(subprotocol))
    gateway = services.gateway
    ws = WebSocket(stream, gateway.flusher, upgrade.rest, gateway.pacer, gateway.poller)
    if gateway.draining:
        await ws.close(CLOSE_RESTART, "server restarting")
        return
    conn = Connection(services, ws, _peer(stream), codec)
    gateway.stats.connections_opened += 1
    try:
        await conn.run()
    except Exception:  # e.g. storage gone during a resume: this connection ends with 1011, the hub goes on
        log.exception("connection %s failed", conn.peer)
        if conn.close_code is None:
            conn.close_code, conn.close_reason = CLOSE_INTERNAL, "服务器内部错误, 请稍后重连 (internal error)"
    finally:
        await ws.close(conn.close_code or 1000, conn.close_reason[:100])
        # break the connection <-> socket references so both are freed at once, not by the collector
        ws.source = None
        conn.session.notify = None


async def echo_gateway(services: Services, stream: trio.SocketStream, upgrade: Upgrade) -> None:
    """Echo every message back unchanged (conformance testing; CAREHUB_WS_ECHO=1)."""
    await stream.send_all(upgrade.accept(None))
    ws = WebSocket(stream, services.gateway.flusher, upgrade.rest, services.gateway.pacer)
    try:
        while (message := await ws.receive()) is not None:
            ws.send_message(message)
    finally:
        await ws.close(ws.close_code or 1000)


def reconnect_advice() -> int:
    """Milliseconds a client should wait before reconnecting after a restart (jittered)."""
    return random.randint(500, 15000)


def bye_frame(reason: str) -> Outbound:
    return Outbound(wire(Bye(CLOSE_RESTART, reason, reconnect_advice(), dt.datetime.now(dt.UTC).isoformat())))
