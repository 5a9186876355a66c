"""The composition root: :func:`open_app` wires storage, identity, the hub and the web layer.

Nothing else constructs services or reads configuration.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import gc
import logging
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import trio
import trio_asyncio
from hypercorn.config import Config as HypercornConfig

from carehub.actors import all_behaviours
from carehub.channels.alipay import AlipayConfig, open_alipay_channel
from carehub.channels.faceid import FaceIdChannel, FaceIdConfig, open_faceid_channel
from carehub.channels.his import HisClient, HisConfig
from carehub.channels.payment import WeChatPay, WeChatPayConfig, open_wechat_pay
from carehub.channels.push import PushChannel, Session
from carehub.channels.sms import SmsChannel, SmsConfig, SmsNoticeChannel, open_sms_channel
from carehub.channels.wechat import WeChatConfig, open_wechat_channel
from carehub.config import Config
from carehub.demo import seed_demo, seed_demo_schedule
from carehub.directory import Directory
from carehub.eventloop import Collector
from carehub.http.api import create_app
from carehub.http.asgi import Dispatcher
from carehub.http.context import Services
from carehub.http.gateway import Gateway, StreamOpener, echo_gateway, websocket_gateway
from carehub.http.routing import Router
from carehub.http.server import WebSocketRoute, serve_http
from carehub.http.websocket import Flusher, ReadPacer, ReadPoller
from carehub.hub import HubSettings, open_hub
from carehub.identity import Identity, IdentitySettings
from carehub.identity.care import CareAccess
from carehub.identity.errors import PatientNotFound
from carehub.identity.masking import mask_name
from carehub.identity.partners import Partners
from carehub.identity.patients import Patients
from carehub.identity.roles import RoleTable
from carehub.identity.signatures import Signatures
from carehub.messaging import (
    Addresses,
    AlertAlarmEffect,
    Channels,
    ClinicalAlerts,
    MessageCenter,
    MessagingSettings,
    Notifier,
    NotifyEffect,
    SendEffect,
)
from carehub.outpatient import Bills, Bookings, Hospital, Outpatient, Schedule
from carehub.outpatient.bills import BillHisEffect, BillRefundEffect
from carehub.outpatient.effects import BlacklistEffect, HisEffect, RefundEffect, SmsEffect
from carehub.statistics import Statistics
from carehub.storage.audit import AuditLog
from carehub.storage.db import open_database, open_threaded_database
from carehub.storage.hub_store import HUB_STORE_SETTINGS, open_hub_store
from carehub.storage.identity.accounts import AccountStore
from carehub.storage.identity.care import CareLinkStore
from carehub.storage.identity.partners import PartnerKeyStore
from carehub.storage.identity.patients import PatientStore
from carehub.storage.identity.roles import RoleStore
from carehub.storage.identity.signing_keys import SigningKeyStore
from carehub.storage.keyring import KEY_FILE_ENV, KEYS_ENV, KeyRing, ensure_key_file
from carehub.storage.messaging import AlertStore, NoticeStore, PublishStore
from carehub.storage.migrate import migrate
from carehub.storage.outpatient import BillStore, BlacklistStore, BookingStore, ScheduleStore, SessionStore
from carehub.storage.outpatient.statistics import StatisticsStore

log = logging.getLogger("carehub")


@dataclasses.dataclass
class App:
    services: Services
    asgi: Dispatcher
    router: Router


@asynccontextmanager
async def open_app(config: Config, *, database_url: str, keyring: KeyRing | None = None) -> AsyncIterator[App]:
    """Run CareHub's moving parts (without the listening socket) for the ``async with`` block.

    ``keyring`` defaults to ``CAREHUB_KEYS`` / ``CAREHUB_KEY_FILE``, else a key file kept in the
    data folder (created on first start: back it up apart from the database).
    """
    async with trio_asyncio.open_loop(), AsyncExitStack() as stack:
        async with open_database(database_url, max_size=config.database_pool_size) as db:
            version = await migrate(db)
            ring = keyring or _load_keyring(config)
            key_file = None if keyring is not None else key_file_path(config)
            sms = await stack.enter_async_context(_open_sms(config))
            identity = Identity(
                AccountStore(db, ring),
                ring,
                AuditLog(db, ring),
                sms=sms,
                settings=IdentitySettings(
                    token_ttl_seconds=config.token_ttl_seconds,
                    lockout_minutes=config.lockout_minutes,
                    staff_idle_minutes=config.staff_idle_minutes,
                    sms_code_seconds=config.sms_code_seconds,
                ),
            )
            identity.roles = RoleTable(RoleStore(db))
            await identity.roles.load()
            await identity.seal_people_names()  # names written before migration 0014
            face = await stack.enter_async_context(_open_faceid(config))
            patients = Patients(PatientStore(db), ring, identity.audit, face)
            signatures = Signatures(SigningKeyStore(db), ring)
            directory = Directory.over(db, identity.audit)
            if config.seed_demo:
                await seed_demo(db, identity, patients, signatures)
            push = PushChannel()
            settings = HubSettings(
                mailbox_size=config.mailbox_size,
                idle_seconds=config.actor_idle_seconds,
                crash_limit=config.crash_limit,
                crash_window_seconds=config.crash_window_seconds,
            )
            behaviours = all_behaviours(config.actor_plugins)
            pay = await stack.enter_async_context(_open_pay(config))
            his = await stack.enter_async_context(_open_his(config))
            # the actors commit through connections of their own, on a loop of their own: under a burst
            # of web requests the shared pool's queue is thousands deep and the Trio loop is slow to
            # come round, and every booking's answer waits for its commit
            # every query of the hub's store is a key lookup; its one-statement commit joins arrays of keys to
            # its tables, and the plan PostgreSQL caches for it must not scan them (docs/architecture.md "Storage")
            hub_db = await stack.enter_async_context(
                open_threaded_database(database_url, min_size=2, max_size=config.hub_database_pool_size,
                                       settings=HUB_STORE_SETTINGS))
            async with open_hub_store(hub_db, ring) as store, open_hub(store, behaviours, settings) as hub:
                hub.sink = push
                identity.alarm = hub.alarm  # sign-in alarms reach the log and the ops dashboard
                partners = Partners(PartnerKeyStore(db), ring)
                care = CareAccess(CareLinkStore(db), identity.audit)
                booking_store = BookingStore(db)
                bookings = Bookings(hub, patients, ring, identity.audit, store=booking_store,
                                    sessions=SessionStore(db), blacklist=BlacklistStore(db))
                bills = Bills(hub, patients, ring, identity.audit, pay, his, store=BillStore(db, store))
                outpatient = Outpatient(Schedule(hub, identity.audit, store=ScheduleStore(db)), bookings, pay, his,
                                        bills, Hospital.from_config(config))
                messaging = await _open_messaging(stack, config, hub, db, ring, sms, patients)
                for effect in (RefundEffect(hub, pay), SmsEffect(AccountStore(db, ring), ring, sms),
                               HisEffect(hub, booking_store, ring, his), BlacklistEffect(bookings),
                               BillHisEffect(bills), BillRefundEffect(bills), NotifyEffect(messaging.notifier),
                               SendEffect(hub, messaging.channels, messaging.addresses, messaging.notices,
                                          messaging.notifier.provider_template), AlertAlarmEffect(hub)):
                    hub.add_effect(effect)
                gateway = Gateway(
                    hub=hub, push=push, flusher=Flusher(), pacer=ReadPacer(),
                    # a silent signed-in connection is closed within a quarter of its idle timeout after it
                    poller=ReadPoller(sweep_seconds=min(1.0, config.ws_idle_timeout_seconds / 4)),
                    collector=Collector(), streams=StreamOpener(store),
                )
                services = Services(
                    config, db, store, hub, push, identity, version, patients, partners, care, signatures, outpatient,
                    directory, gateway, Statistics(StatisticsStore(db)), messaging,
                )
                if config.seed_demo:
                    await seed_demo_schedule(outpatient.schedule)
                quart_app, router = create_app(services)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(
                        functools.partial(
                            push.watch,
                            heartbeat_seconds=config.ws_heartbeat_seconds,
                            read_gap=functools.partial(_read_gap, services),
                            kick=gateway.kick_slow,
                        )
                    )
                    nursery.start_soon(gateway.ops.publish_every_second)
                    await nursery.start(gateway.flusher.run)
                    await nursery.start(gateway.pacer.run)
                    await nursery.start(gateway.poller.run)
                    await nursery.start(gateway.streams.run)
                    nursery.start_soon(_maintenance, services)
                    nursery.start_soon(bookings.keep_bans_fresh)
                    if key_file is not None:
                        nursery.start_soon(_watch_key_file, ring, key_file)
                    try:
                        yield App(services, Dispatcher(services, quart_app), router)
                    finally:
                        nursery.cancel_scope.cancel()


async def _open_messaging(stack: AsyncExitStack, config: Config, hub: Any, db: Any, ring: KeyRing,
                          sms: SmsChannel | None, patients: Patients) -> MessageCenter:
    """The message center with the outside channels configured here (docs/messaging.md)."""
    notices = NoticeStore(db)
    wechat = alipay = None
    if config.wechat_url:
        wechat = await stack.enter_async_context(open_wechat_channel(WeChatConfig(
            config.wechat_url, config.wechat_appid, config.wechat_secret, config.wechat_template_id,
            config.public_base_url, timeout=config.channel_timeout_seconds)))
    if config.alipay_url:
        alipay = await stack.enter_async_context(open_alipay_channel(AlipayConfig(
            config.alipay_url, config.alipay_app_id, config.alipay_app_private_key_pem, config.alipay_public_key_pem,
            config.alipay_template_id, config.public_base_url, timeout=config.channel_timeout_seconds)))
    channels = Channels({"wechat": wechat, "sms": SmsNoticeChannel(sms) if sms is not None else None,
                         "alipay": alipay})
    await channels.load(notices)
    notifier = Notifier(hub, notices, channels, MessagingSettings(nav_url=config.nav_url))
    await notifier.load()

    async def patient_label(patient_id: str) -> str | None:
        try:
            return mask_name((await patients.profile_for_care(patient_id))["name"])
        except PatientNotFound:
            return None

    alerts = ClinicalAlerts(hub, AlertStore(db), patient_label, default_ack_minutes=config.alert_ack_minutes)
    return MessageCenter(notifier, channels, Addresses(notices, AccountStore(db, ring), ring), notices,
                         PublishStore(db), alerts)


def key_file_path(config: Config) -> Path | None:
    """The key file in use: ``CAREHUB_KEY_FILE``, else the data folder's (None with ``CAREHUB_KEYS``)."""
    if os.environ.get(KEY_FILE_ENV):
        return Path(os.environ[KEY_FILE_ENV])
    if os.environ.get(KEYS_ENV):
        return None
    return Path(config.data_dir) / "keys.json"


def _load_keyring(config: Config) -> KeyRing:
    path = key_file_path(config)
    if path is None:
        return KeyRing.from_env()
    path.parent.mkdir(parents=True, exist_ok=True)
    return ensure_key_file(path)


async def _watch_key_file(ring: KeyRing, path: Path, every: float = 2.0) -> None:
    """Pick up a rotated key file without a restart (``carehub keys rotate`` waits for this)."""
    def mtime() -> int:
        return path.stat().st_mtime_ns if path.exists() else 0

    seen = await trio.to_thread.run_sync(mtime)
    while True:
        await trio.sleep(every)
        try:
            changed = await trio.to_thread.run_sync(mtime)
            if changed != seen:
                ring.adopt(await trio.to_thread.run_sync(KeyRing.from_file, path))
                seen = changed
                log.info("reloaded the key ring from %s: current key %s", path, ring.current_key_id)
        except Exception as err:  # a half-written or wrong file: keep the keys we have
            log.error("ALARM could not reload the key file %s: %s", path, err)


@asynccontextmanager
async def _open_sms(config: Config) -> AsyncIterator[SmsChannel | None]:
    if not config.sms_url:
        yield None
        return
    sms_config = SmsConfig(config.sms_url, config.sms_access_key_id, config.sms_access_key_secret, config.sms_sign_name,
                           timeout=config.channel_timeout_seconds)
    async with open_sms_channel(sms_config) as channel:
        yield channel


@asynccontextmanager
async def _open_pay(config: Config) -> AsyncIterator[WeChatPay | None]:
    if not config.pay_url:
        yield None
        return
    pay_config = WeChatPayConfig(
        base_url=config.pay_url, mchid=config.pay_mchid, appid=config.pay_appid,
        merchant_private_key_pem=config.pay_merchant_key_pem, merchant_serial=config.pay_merchant_serial,
        platform_public_key_pem=config.pay_platform_public_key_pem, platform_key_id=config.pay_platform_key_id,
        apiv3_key=config.pay_apiv3_key,
        notify_url=config.pay_notify_url or f"http://{config.host}:{config.port}/api/v1/payments/wechat/notify",
        nhsa_url=config.pay_nhsa_url or None,
    )
    async with open_wechat_pay(pay_config) as pay:
        yield pay


@asynccontextmanager
async def _open_his(config: Config) -> AsyncIterator[HisClient | None]:
    if not config.his_url:
        yield None
        return
    async with HisClient(HisConfig(config.his_url, config.his_token)) as his:
        yield his


@asynccontextmanager
async def _open_faceid(config: Config) -> AsyncIterator[FaceIdChannel | None]:
    if not config.faceid_url:
        yield None
        return
    face_config = FaceIdConfig(
        config.faceid_url, config.faceid_secret_id, config.faceid_secret_key, config.faceid_rule_id,
        config.faceid_redirect_url,
    )
    async with open_faceid_channel(face_config) as channel:
        yield channel


async def _maintenance(services: Services) -> None:
    """Stream retention, old partner nonces and the 'reminders due' gauge."""
    last_purge = 0.0
    last_nonce_purge = 0.0
    while True:
        try:
            now = dt.datetime.now(dt.UTC)
            services.gateway.ops.reminders_due = await services.store.reminders_due(now)
            if trio.current_time() - last_nonce_purge > 60:
                last_nonce_purge = trio.current_time()
                await services.partners.purge_nonces()
            if trio.current_time() - last_purge > 3600 or last_purge == 0.0:
                last_purge = trio.current_time()
                cutoff = now - dt.timedelta(days=services.config.stream_retention_days)
                purged = await services.store.purge_deliveries(cutoff)
                if purged:
                    log.info("purged %d deliveries older than %s", purged, cutoff)
                # send markers of settled sends (a day), and the publish API's first answers: a repeat of a
                # key is recognised for as long as the stream keeps the notice (docs/open-api.md)
                await services.messaging.notices.purge_attempts(now - dt.timedelta(days=1))
                await services.messaging.publishing.purge_answers(cutoff)
        except Exception as err:  # the database may be down for a while; keep trying
            log.warning("maintenance skipped: %s", err)
        await trio.sleep(2.0)


async def _read_gap(services: Services, session: Session) -> None:
    if session.account_id is None:
        return
    try:
        items = await services.store.read_stream(session.account_id, session.last_sent_seq, 200)
    except Exception as err:
        log.warning("could not fill a stream gap for %s: %s", session.account_id, err)
        return
    session.fill_gap(items)


def tune_gc(threshold: int) -> None:
    """Collect less often, and never walk what start-up built (docs/benchmarks.md, GC experiment).

    Objects that live as long as the process (modules, the app, caches) are frozen out of every
    later collection; the young generation is collected every ``threshold`` allocations instead
    of 700 (by :class:`Collector`, at a quiet moment). Reference counting still frees almost
    everything at once; only cycles wait longer.
    """
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(threshold, max(second, 50), max(third, 100))


def hypercorn_config(config: Config) -> HypercornConfig:
    hc = HypercornConfig()
    hc.bind = [f"{config.host}:{config.port}"]
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    # the gateway enforces its own, smaller frame limit with a clear error; this is the hard cap
    hc.websocket_max_message_size = 16 * 1024 * 1024
    hc.graceful_timeout = 5.0
    hc.keep_alive_timeout = 75.0
    hc.backlog = 4096
    return hc


async def listen(app: App, config: Config, *, shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
                 task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve HTTP and the WebSocket routes on ``config.host:config.port``; reports the bound URLs."""
    services = app.services
    routes: dict[str, WebSocketRoute] = {"/ws": functools.partial(websocket_gateway, services)}
    if config.ws_echo:
        routes["/ws/echo"] = functools.partial(echo_gateway, services)
    await serve_http(app.asgi, hypercorn_config(config), host=config.host, port=config.port,
                     websocket_routes=routes, shutdown_trigger=shutdown_trigger, task_status=task_status)


async def serve(config: Config, *, database_url: str, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
                ) -> None:
    """Serve until SIGINT or SIGTERM; reports the base URL once listening."""
    async with open_app(config, database_url=database_url) as app:
        tune_gc(config.gc_threshold)
        stop = trio.Event()
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                collector = app.services.gateway.collector
                await nursery.start(collector.run)

                async def watch_signals() -> None:
                    async for signum in signals:
                        log.info("received %s, stopping", signal.Signals(signum).name)
                        await app.services.gateway.drain()
                        stop.set()
                        return

                nursery.start_soon(watch_signals)
                binds = await nursery.start(functools.partial(listen, app, config, shutdown_trigger=stop.wait))
                base = binds[0].replace("0.0.0.0", "127.0.0.1")
                task_status.started(base)
                await stop.wait()
                collector.stop()
                nursery.cancel_scope.deadline = trio.current_time() + 8


