"""Configuration: read once from the environment and the command line, nowhere else.

Every setting has an environment variable (``CAREHUB_*``); ``carehub serve`` flags override
them. :func:`open_app` in :mod:`carehub.app` is the only consumer.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclasses.dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path(".carehub")
    #: ``None`` means: start the embedded PostgreSQL in ``data_dir / "pg"``.
    database_url: str | None = None
    database_pool_size: int = 10
    #: connections of the actors' own pool (commits, reminders, streams): never behind web queries
    hub_database_pool_size: int = 4
    seed_demo: bool = True
    ws_echo: bool = False
    #: Seconds an actor may stay idle before it is passivated.
    actor_idle_seconds: float = 300.0
    mailbox_size: int = 256
    #: Crashes within ``crash_window_seconds`` that quarantine an actor.
    crash_limit: int = 5
    crash_window_seconds: float = 60.0
    stream_retention_days: int = 30
    ws_max_frame_bytes: int = 64 * 1024
    ws_send_buffer: int = 256
    ws_heartbeat_seconds: float = 25.0
    ws_idle_timeout_seconds: float = 75.0
    #: A consumer whose send buffer stays full this long is disconnected.
    ws_stuck_seconds: float = 10.0
    token_ttl_seconds: int = 12 * 3600
    #: SMS gateway (Aliyun dysmsapi or its simulator); empty: SMS sign-in answers 503.
    sms_url: str = ""
    sms_access_key_id: str = ""
    sms_access_key_secret: str = ""
    sms_sign_name: str = "智慧医院"
    #: Face verification provider (Tencent FaceID or its simulator); empty: ID photo review only.
    faceid_url: str = ""
    faceid_secret_id: str = ""
    faceid_secret_key: str = ""
    faceid_rule_id: str = "1"
    #: where the provider sends the person back: the patient app's return page (ME-1)
    faceid_redirect_url: str = "http://127.0.0.1:8080/h5/me/verify"
    #: WeChat Pay API v3 (and its med-ins mixed orders): the gateway, the merchant and its keys
    pay_url: str = ""
    pay_mchid: str = ""
    pay_appid: str = ""
    pay_merchant_serial: str = ""
    pay_merchant_key_pem: str = ""
    pay_platform_key_id: str = ""
    pay_platform_public_key_pem: str = ""
    pay_apiv3_key: str = ""
    #: where the gateway posts payment and refund notifications (must reach this hub)
    pay_notify_url: str = ""
    #: the NHSA settlement interface for insurance refunds (6203); empty: the pay gateway's simulator
    pay_nhsa_url: str = ""
    #: The hospital as the med-ins mixed orders name it (OUT-6): the city's NHSA code, the
    #: hospital's name and its NHSA institution number. The defaults are the demo hospital's.
    hospital_city_id: str = "440100"
    hospital_name: str = "CareHub 示范医院"
    hospital_med_inst_no: str = "H44010000001"
    #: The WeChat openid a payment request without one pays as: the demo's payer (the pay gateway
    #: simulator accepts it). A real deployment sets it empty, and clients send the payer's openid.
    pay_default_openid: str = "demo-openid"
    #: the HIS's FHIR R4 base URL and bearer token (bookings are pushed as Appointments)
    his_url: str = ""
    his_token: str = ""
    # ---- message center (docs/messaging.md) ----
    #: NAV-2: indoor navigation page for a department named in a notice ({department}: its id)
    nav_url: str = "https://nav.example.cn/hospital/route?to={department}"
    #: the public address of the patient app, for absolute deep links in WeChat/Alipay/SMS notices
    public_base_url: str = "http://127.0.0.1:8080"
    #: how long a notice channel's provider may take to answer one send (seconds)
    channel_timeout_seconds: float = 10.0
    #: WeChat service account (https://api.weixin.qq.com or the simulator); empty: no WeChat channel
    wechat_url: str = ""
    wechat_appid: str = ""
    wechat_secret: str = ""
    #: the default notice template (keywords thing1 title, thing2 content, time3 time)
    wechat_template_id: str = ""
    #: the token of the event-push server URL (signs TEMPLATESENDJOBFINISH pushes)
    wechat_event_token: str = ""
    #: Alipay open platform gateway (https://openapi.alipay.com/gateway.do or the simulator); empty: none
    alipay_url: str = ""
    alipay_app_id: str = ""
    alipay_app_private_key_pem: str = ""
    alipay_public_key_pem: str = ""
    alipay_template_id: str = ""
    sms_code_seconds: int = 300
    lockout_minutes: float = 15.0
    staff_idle_minutes: float = 30.0
    #: First-generation threshold of Python's cyclic garbage collector in the serving process
    #: (CPython's default is 700). Every idle connection adds a few hundred tracked objects and each
    #: full collection walks them all: profiles showed half the hub's CPU in the collector.
    gc_threshold: int = 50_000
    #: The built pages (``web/`` built by scripts/serve); ``None``: ``web/dist`` of this checkout.
    web_dist: Path | None = None
    #: Extra actor kinds, ``module:Class`` separated by commas (deployment add-ons, tests).
    actor_plugins: str = ""
    #: Minutes a contact has to acknowledge a clinical alert before it escalates, for kinds without a
    #: row in ``alert_rules`` (docs/clinical-alerts.md).
    alert_ack_minutes: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Config:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for field in dataclasses.fields(cls):
            raw = env.get("CAREHUB_" + field.name.upper())
            if raw is None or raw == "":
                continue
            values[field.name] = _parse(field.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def _parse(kind: object, raw: str) -> object:
    text = str(kind)
    if "bool" in text:
        return _bool(raw)
    if text.startswith("int"):
        return int(raw)
    if text.startswith("float"):
        return float(raw)
    if "Path" in text:
        return Path(raw)
    return raw
