"""The Quart-Trio application: error handlers, health, metrics, OpenAPI; routes in ``rest/``."""

from __future__ import annotations

import logging
from typing import Any

import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from quart import Response
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from carehub.eventloop import loop_load
from carehub.storage.migrate import latest_version, schema_version

from .context import Services
from .errors import ApiError
from .openapi import openapi_document
from .pages import register_pages
from .rest import (
    admin,
    alerts,
    auth,
    bills,
    channel_bindings,
    channel_reports,
    content_admin,
    display,
    doctor,
    hub,
    notices,
    open,
    open_messages,
    ops,
    outpatient,
    patients,
)
from .rest import directory as directory_routes
from .rest import outpatient_admin as outpatient_admin_routes
from .rest import statistics as statistics_routes
from .routing import RequestContext, Router, error_response, json_response

log = logging.getLogger("carehub.http")


class HubCollector(Collector):
    def __init__(self, services: Services) -> None:
        self.s = services

    def collect(self) -> Any:
        snap = self.s.hub.snapshot()
        actors = GaugeMetricFamily("carehub_actors", "Live actor activations", labels=["kind"])
        for kind in sorted(self.s.hub.behaviours):
            actors.add_metric([kind], snap["actors_by_kind"].get(kind, 0))
        yield actors
        yield GaugeMetricFamily(
            "carehub_mailbox_depth", "Messages waiting in all mailboxes", value=snap["mailbox_depth"]
        )
        yield GaugeMetricFamily(
            "carehub_mailbox_oldest_seconds", "Age of the oldest waiting message", value=snap["oldest_waiting_seconds"]
        )
        yield CounterMetricFamily("carehub_messages", "Messages handled by actors", value=snap["messages_total"])
        yield GaugeMetricFamily(
            "carehub_messages_per_second", "Messages handled per second (5 s window)", value=snap["messages_per_second"]
        )
        errors = CounterMetricFamily("carehub_errors", "Errors answered to senders", labels=["code"])
        for code, n in sorted(snap["errors_by_code"].items()):
            errors.add_metric([code], n)
        yield errors
        yield CounterMetricFamily("carehub_actor_crashes", "Handler crashes", value=snap["crashes_total"])
        yield GaugeMetricFamily("carehub_actors_quarantined", "Quarantined actors", value=len(snap["quarantined"]))
        yield GaugeMetricFamily("carehub_connections", "Open WebSocket connections", value=len(self.s.push.sessions))
        yield GaugeMetricFamily(
            "carehub_reminders_due", "Stored reminders and tells due now", value=self.s.gateway.ops.reminders_due
        )
        yield CounterMetricFamily("carehub_reminders_fired", "Reminders fired", value=snap["reminders_fired"])
        yield CounterMetricFamily("carehub_reminders_late", "Reminders fired late", value=snap["reminders_late"])
        yield CounterMetricFamily("carehub_effects_done", "Effects performed (HIS pushes, SMS, refunds)",
                                  value=snap["effects_done"])
        yield CounterMetricFamily("carehub_effects_failed", "Effect attempts that failed (retried)",
                                  value=snap["effects_failed"])
        yield CounterMetricFamily("carehub_effects_deferred", "Effects that waited while the hub answered a burst",
                                  value=snap["effects_deferred"])
        collector = self.s.gateway.collector
        if collector.running:
            passes = CounterMetricFamily("carehub_gc_collections", "Garbage collector passes (run at quiet moments)",
                                         labels=["generation"])
            for generation, n in enumerate(collector.collections):
                passes.add_metric([str(generation)], n)
            yield passes
            yield CounterMetricFamily("carehub_gc_deferred", "Collections that waited while the hub answered a burst",
                                      value=collector.deferred)
            yield CounterMetricFamily("carehub_gc_seconds", "Time spent in garbage collection", value=collector.seconds)
        yield CounterMetricFamily(
            "carehub_ws_bad_frames", "Malformed or refused WebSocket frames", value=self.s.gateway.stats.bad_frames
        )
        flusher = self.s.gateway.flusher
        yield CounterMetricFamily("carehub_ws_socket_writes", "Socket writes of queued WebSocket frames",
                                  value=flusher.writes)
        yield GaugeMetricFamily("carehub_ws_sockets_full",
                                "Connections whose socket buffer is full now (the client reads slower than sent)",
                                value=flusher.full)
        yield CounterMetricFamily("carehub_ws_kicked_slow", "Connections closed with 4008 (slow consumer)",
                                  value=self.s.gateway.stats.kicked_slow)
        yield CounterMetricFamily("carehub_ws_reads_paced",
                                  "WebSocket reads held for a later turn of the event loop (a burst of frames)",
                                  value=self.s.gateway.pacer.paced)
        yield CounterMetricFamily("carehub_ws_reads_polled",
                                  "WebSocket reads done by the read poller for signed-in connections",
                                  value=self.s.gateway.poller.reads)
        yield GaugeMetricFamily("carehub_loop_running_share",
                                "Share of the last 100 ms the event loop spent running tasks (not waiting for I/O)",
                                value=loop_load().share)


def create_app(services: Services) -> tuple[QuartTrio, Router]:
    app = QuartTrio("carehub.http", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True
    router = Router(app, services)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(services))
    ProcessCollector(registry=registry)  # process_resident_memory_bytes etc.
    r = router.route

    @app.errorhandler(HTTPException)
    async def http_error(err: HTTPException) -> Response:
        code = (err.name or "error").lower().replace(" ", "_")
        status = err.code or 400
        return error_response(ApiError(status, code, err.description or err.name or "request failed"))

    @app.errorhandler(Exception)
    async def unexpected(err: Exception) -> Response:
        log.exception("unexpected error")
        return error_response(ApiError(500, "internal_error", "服务器内部错误 (logged for the operators)"))

    # ---- health and metadata ----------------------------------------------------------------

    @r("GET", "/healthz", summary="The process is up", permission=None, tag="ops")
    async def healthz(ctx: RequestContext) -> Any:
        return {"status": "ok"}

    @r("GET", "/readyz", summary="Database reachable and migrations applied", permission=None, tag="ops")
    async def readyz(ctx: RequestContext) -> Any:
        try:
            with trio.fail_after(2):
                version = await schema_version(services.db)
        except Exception as err:  # any failure to reach the database means: not ready
            reason = "timed out" if isinstance(err, trio.TooSlowError) else f"{type(err).__name__}: {err}"
            raise ApiError(503, "database_unavailable", f"数据库不可用 (database unreachable: {reason})") from None
        if version < latest_version():
            raise ApiError(503, "migrations_pending", f"schema version {version}, expected {latest_version()}")
        return {"status": "ready", "schema_version": version}

    @r("GET", "/metrics", summary="Prometheus metrics", permission=None, tag="ops", content_type="text/plain")
    async def metrics(ctx: RequestContext) -> Any:
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

    @r("GET", "/openapi.json", summary="This document", permission=None, tag="meta")
    async def openapi(ctx: RequestContext) -> Any:
        return openapi_document(router.specs)

    # each REST module is handed exactly the domain objects it uses
    directory = services.directory
    gateway = services.gateway
    auth.register(r, identity=services.identity, store=services.store, close_sessions=gateway.close_sessions)
    patients.register(r, patients=services.patients, identity=services.identity)
    doctor.register(r, care=services.care, patients=services.patients, hub=services.hub,
                    outpatient=services.outpatient)
    display.register(r, outpatient=services.outpatient, hub=services.hub, draining=lambda: gateway.draining)
    hub.register(r, hub=services.hub)
    admin.register(r, identity=services.identity, patients=services.patients, partners=services.partners,
                   signatures=services.signatures, close_sessions=gateway.close_sessions)
    open.register(r, hub=services.hub, directory=directory)
    ops.register(r, hub=services.hub, ops=gateway.ops)
    directory_routes.register(r, directory=directory)
    content_admin.register(r, directory=directory, identity=services.identity, signatures=services.signatures)
    outpatient.register(r, outpatient=services.outpatient, hub=services.hub, patients=services.patients)
    outpatient_admin_routes.register(r, outpatient=services.outpatient)
    bills.register(r, bills=services.outpatient.bills, hospital=services.outpatient.hospital)
    statistics_routes.register(r, statistics=services.statistics)
    notices.register(r, messaging=services.messaging)
    channel_reports.register(r, messaging=services.messaging, config=services.config)
    open_messages.register(r, messaging=services.messaging, identity=services.identity, patients=services.patients)
    alerts.register(r, messaging=services.messaging)
    channel_bindings.register(r, messaging=services.messaging)
    register_pages(app, services.config.web_dist)
    return app, router


__all__ = ["create_app", "json_response"]
