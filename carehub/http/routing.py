"""REST routes declared once: path, permission, body type. The same declarations drive
authentication, validation, the OpenAPI document and the route x role test."""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec
import orjson
from quart import Quart, Response, request

from carehub.errors import CareHubError
from carehub.hub import HubError
from carehub.identity import AuthFailed, Principal
from carehub.identity.partners import SIGNATURE_HEADERS, PartnerCaller

from .context import Services
from .errors import ApiError, from_error

log = logging.getLogger("carehub.http")

Handler = Callable[..., Awaitable[Any]]


class CommandWaiter(Protocol):
    """A command waiting for its admission without a task (implemented by the ``/ws`` gateway).

    The route's ``admit`` hands it to the domain, which calls one of the two exactly once.
    """

    def admitted(self, ticket: object) -> bool:
        """Start the command's task now; the handler gets ``ticket`` (False: the connection is gone)."""
        ...

    def refused(self, err: ApiError) -> None:
        """Answer the command without a task."""
        ...


#: a command's admission: ``admit(ctx, body, waiter)`` has the domain admit ``waiter`` now or later, or
#: refuse it later; it raises ApiError (or a domain error) to answer at once (e.g. "full" from the board)
Admitting = Callable[["RequestContext", Any, CommandWaiter], object]
#: ``Router.route``: what each ``rest`` module's ``register`` gets to declare its routes
RouteDecorator = Callable[..., Callable[[Handler], Handler]]


@dataclasses.dataclass(frozen=True)
class RouteSpec:
    method: str
    path: str  # Quart syntax: /api/v1/things/<thing_id>
    summary: str
    #: None: public. Otherwise the permission a caller's roles must grant.
    permission: str | None
    body: type[msgspec.Struct] | None
    tag: str
    query: tuple[str, ...] = ()
    content_type: str = "application/json"
    #: set for third-party routes: HMAC-SM3 signed requests using this operation, no bearer token
    partner_op: str | None = None
    #: set when the route is also a command on ``/ws`` (``{"op": "command", "name": ...}``)
    command: str | None = None
    #: the answer's shape for the OpenAPI document (a msgspec type: a Struct, or e.g. ``list[Struct]``);
    #: documentation only: handlers still return plain data
    response: Any = None
    #: the status of a successful answer, for the OpenAPI document (201 created, 202 accepted)
    status: int = 200

    @property
    def openapi_path(self) -> str:
        return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", self.path)

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"<(?:\w+:)?(\w+)>", self.path)


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """A handler's answer with its status: a JSON response over HTTP, a reply frame's result on ``/ws``."""

    payload: Any
    status: int = 200


@dataclasses.dataclass
class RequestContext:
    """Who is asking: the signed-in account (or None on a public route), or the partner system that signed."""

    principal: Principal | None
    partner: PartnerCaller | None = None


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status=status, content_type="application/json", headers=headers)


def error_response(err: ApiError) -> Response:
    return json_response(err.body(), err.status, headers=err.headers or None)


async def authenticate(services: Services, *, required: bool) -> Principal | None:
    header = request.headers.get("Authorization", "")
    if not header:
        if required:
            raise ApiError(401, "unauthenticated", "缺少登录令牌: send 'Authorization: Bearer <token>'")
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthenticated", "Authorization header must be 'Bearer <token>'")
    try:
        return await services.identity.authenticate(token.strip())
    except AuthFailed as err:
        raise ApiError(401, "unauthenticated", str(err)) from None


async def verify_partner(services: Services, operation: str) -> PartnerCaller:
    raw = await request.get_data(cache=True)
    assert isinstance(raw, bytes)
    path = request.path + ("?" + request.query_string.decode() if request.query_string else "")
    signed = {name: request.headers.get(name, "") for name in SIGNATURE_HEADERS}
    # a PartnerRefused is answered by its code (and Retry-After when rate limited), like any CareHubError
    return await services.partners.verify(request.method, path, signed, raw, operation)


async def read_body(spec: RouteSpec) -> Any:
    if spec.body is None:
        return None
    raw = await request.get_data(cache=True)
    if not raw:
        raise ApiError(400, "bad_request", "request body is empty; send a JSON object")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise ApiError(400, "bad_request", f"request body is not valid JSON: {err}") from None
    try:
        return msgspec.convert(data, spec.body, strict=True)
    except msgspec.ValidationError as err:
        raise ApiError(422, "invalid", f"request body: {err}") from None



def _refuse_nul(params: dict[str, Any]) -> None:
    """A NUL character in a path or query value is refused here: PostgreSQL cannot store one in text."""
    for name, value in params.items():
        if isinstance(value, str) and "\x00" in value:
            raise ApiError(400, "bad_request", f"路径含不允许的字符 (path parameter {name!r} contains a NUL character)")
    if b"%00" in request.query_string or b"\x00" in request.query_string:
        raise ApiError(400, "bad_request", "查询参数含不允许的字符 (the query string contains a NUL character)")


_last_unavailable_log = 0.0


def _note_unavailable(err: CareHubError | HubError) -> None:
    """One log line per 10 s while a dependency is down (not a traceback per request)."""
    global _last_unavailable_log
    now = time.monotonic()
    if now - _last_unavailable_log >= 10.0:
        _last_unavailable_log = now
        log.warning("answering %s (503, retryable) while a dependency is down: %s", err.code, err.message)


class Router:
    def __init__(self, app: Quart, services: Services) -> None:
        self.app = app
        self.services = services
        self.specs: list[RouteSpec] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        permission: str | None,
        body: type[msgspec.Struct] | None = None,
        tag: str = "api",
        query: tuple[str, ...] = (),
        content_type: str = "application/json",
        partner_op: str | None = None,
        command: str | None = None,
        admit: Admitting | None = None,
        response: Any = None,
        status: int = 200,
    ) -> Callable[[Handler], Handler]:
        spec = RouteSpec(method, path, summary, permission, body, tag, query, content_type, partner_op, command,
                         response, status)
        self.specs.append(spec)

        def decorate(fn: Handler) -> Handler:
            @functools.wraps(fn)
            async def view(**params: Any) -> Response:
                try:
                    _refuse_nul(params)
                    partner = None
                    principal = None
                    if spec.partner_op is not None:
                        partner = await verify_partner(self.services, spec.partner_op)
                    else:
                        principal = await authenticate(self.services, required=permission is not None)
                    if permission is not None and (principal is None or not principal.can(permission)):
                        raise ApiError(403, "forbidden", f"需要权限 {permission} (your roles do not grant it)")
                    payload = await read_body(spec)
                    ctx = RequestContext(principal, partner)
                    args = (ctx, payload) if spec.body is not None else (ctx,)
                    result = await fn(*args, **params)
                except ApiError as err:
                    return error_response(err)
                except (CareHubError, HubError) as err:  # a domain rule or the hub refused: its code says the status
                    if err.retryable:
                        _note_unavailable(err)
                    return error_response(from_error(err))
                if isinstance(result, Response):
                    return result
                if isinstance(result, Answer):
                    return json_response(result.payload, result.status)
                return json_response(result)

            self.app.add_url_rule(path, endpoint=f"{method}:{path}", view_func=view, methods=[method])
            if command is not None:
                # a command has no path, query or request object: only a body, and a signed-in account
                assert not spec.path_params and not spec.query and spec.partner_op is None and permission, spec
                assert command not in self.services.gateway.commands, command
                self.services.gateway.commands[command] = Command(spec, fn, admit)
            return fn

        return decorate


@dataclasses.dataclass(frozen=True)
class Command:
    """A route run from a WebSocket frame: the same permission, body type and handler, no HTTP request.

    A phone that keeps its ``/ws`` connection open sends a booking as one frame instead of one HTTP
    request (measured: docs/benchmarks.md, "`release-burst` over the WebSocket").
    """

    spec: RouteSpec
    handler: Handler
    #: decides when the command gets a task, and can answer without one (e.g. a booking: the sold-out
    #: board, the queue at the slot pool's gate); its task then runs the handler with the waiter's ticket
    admit: Admitting | None = None

    def checked(self, principal: Principal, body: Any) -> Any:
        """The body as the route's type (None for a route without one), once the caller may run it; raises ApiError."""
        permission = self.spec.permission
        if permission is not None and not principal.can(permission):
            raise ApiError(403, "forbidden", f"需要权限 {permission} (your roles do not grant it)")
        if self.spec.body is None:
            return None
        if not isinstance(body, dict):
            raise ApiError(400, "bad_request", "command needs a 'body' object")
        try:
            return msgspec.convert(body, self.spec.body, strict=True)
        except msgspec.ValidationError as err:
            raise ApiError(422, "invalid", f"request body: {err}") from None

    async def run(self, ctx: RequestContext, payload: Any, ticket: object = None) -> Answer:
        """The handler on a :meth:`checked` body (and the ``ticket`` its admission gave, when it had one);
        a domain or hub error comes out as the route's ApiError."""
        args = (ctx,) if self.spec.body is None else (ctx, payload)
        try:
            result = await (self.handler(*args) if ticket is None else self.handler(*args, ticket))
        except (CareHubError, HubError) as err:
            raise from_error(err) from None
        if isinstance(result, Response):  # a route that builds its own HTTP response cannot be a command
            raise TypeError(f"command {self.spec.command} answered with an HTTP response")
        return result if isinstance(result, Answer) else Answer(result)
