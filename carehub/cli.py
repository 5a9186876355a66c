"""``carehub serve | bots | migrate``."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import os
import sys
from pathlib import Path

import trio

from carehub.config import Config


def _serve(args: argparse.Namespace) -> int:
    from carehub.app import serve
    from carehub.demo import DEMO_PARTNER_KEY_ID, DEMO_PARTNER_KEY_SECRET, DEMO_PASSWORD, DEMO_TOTP_SECRET

    config = Config.from_env(
        host=args.host, port=args.port, data_dir=args.data_dir, database_url=args.database_url,
        seed_demo=False if args.no_seed else None,
    )
    embedded = None
    database_url = config.database_url
    if database_url is None:
        from carehub.storage.embedded import EmbeddedPostgres

        embedded = EmbeddedPostgres(Path(config.data_dir) / "pg")
        logging.getLogger("carehub").info("starting the embedded PostgreSQL in %s", embedded.pgdata)
        database_url = embedded.start()
    try:

        async def main() -> None:
            nonlocal config
            async with trio.open_nursery() as nursery:
                if not config.sms_url and config.seed_demo:
                    # the demo hospital's outside world: a simulated SMS gateway on a free port
                    from carehub.bots.sms_gateway import (
                        DEFAULT_ACCESS_KEY_ID,
                        DEFAULT_ACCESS_KEY_SECRET,
                        serve_sms_gateway,
                    )

                    sms_url = await nursery.start(
                        functools.partial(
                            serve_sms_gateway, host=config.host, access_key_id=DEFAULT_ACCESS_KEY_ID,
                            access_key_secret=DEFAULT_ACCESS_KEY_SECRET,
                        )
                    )
                    config = dataclasses.replace(
                        config, sms_url=sms_url, sms_access_key_id=DEFAULT_ACCESS_KEY_ID,
                        sms_access_key_secret=DEFAULT_ACCESS_KEY_SECRET,
                    )
                    print(f"SMS gateway simulator: {sms_url}  (sign-in codes: {sms_url}/_sim/messages)", flush=True)
                if not config.pay_url and config.seed_demo:
                    # ... a simulated WeChat Pay (and medical-insurance) gateway
                    from carehub.bots.pay_gateway import serve_pay_gateway

                    pay = await nursery.start(functools.partial(serve_pay_gateway, host=config.host))
                    config = dataclasses.replace(
                        config, pay_url=pay.base_url, pay_mchid=pay.mchid, pay_appid=pay.appid,
                        pay_merchant_serial=pay.merchant_serial, pay_merchant_key_pem=pay.merchant_private_key_pem,
                        pay_platform_key_id=pay.platform_key_id,
                        pay_platform_public_key_pem=pay.platform_public_key_pem, pay_apiv3_key=pay.apiv3_key,
                    )
                    print(f"payment gateway simulator: {pay.base_url}  (pay an order: POST "
                          f"{pay.base_url}/_sim/orders/<out_trade_no>/pay)", flush=True)
                if not config.faceid_url and config.seed_demo:
                    # ... a simulated face verification provider (Tencent FaceID), for real-name checks
                    from carehub.bots.faceid_sim import (
                        DEFAULT_RULE_ID,
                        DEFAULT_SECRET_ID,
                        DEFAULT_SECRET_KEY,
                        serve_faceid_sim,
                    )

                    face_url = await nursery.start(functools.partial(
                        serve_faceid_sim, host=config.host, secret_id=DEFAULT_SECRET_ID, secret_key=DEFAULT_SECRET_KEY))
                    config = dataclasses.replace(
                        config, faceid_url=face_url, faceid_secret_id=DEFAULT_SECRET_ID,
                        faceid_secret_key=DEFAULT_SECRET_KEY, faceid_rule_id=DEFAULT_RULE_ID,
                    )
                    print(f"face verification simulator: {face_url}  (a started check passes when its URL is "
                          "opened)", flush=True)
                if not config.his_url and config.seed_demo:
                    # ... and a simulated HIS (FHIR R4) that receives every booking as an Appointment
                    from carehub.bots.his_sim import serve_his

                    his = await nursery.start(functools.partial(serve_his, host=config.host))
                    config = dataclasses.replace(config, his_url=his.base_url, his_token=his.token)
                    print(f"HIS simulator (FHIR R4): {his.base_url}  (appointments: {his.admin_url}/_sim/appointments)",
                          flush=True)

                if not config.wechat_url and config.seed_demo:
                    # ... a simulated WeChat service account (template messages, event pushes back to the hub)
                    from carehub.bots import wechat_sim

                    wechat_url = await nursery.start(functools.partial(
                        wechat_sim.serve_wechat_sim, host=config.host,
                        callback_url=f"http://{config.host}:{config.port}/api/v1/channels/wechat/events"))
                    config = dataclasses.replace(
                        config, wechat_url=wechat_url, wechat_appid=wechat_sim.DEFAULT_APPID,
                        wechat_secret=wechat_sim.DEFAULT_SECRET, wechat_template_id=wechat_sim.DEFAULT_TEMPLATE_ID,
                        wechat_event_token=wechat_sim.DEFAULT_CALLBACK_TOKEN,
                    )
                    print(f"WeChat simulator: {wechat_url}  (messages sent: {wechat_url}/_sim/messages)", flush=True)
                if not config.alipay_url and config.seed_demo:
                    # ... and a simulated Alipay open platform (life-account messages)
                    from carehub.bots.alipay_sim import serve_alipay_sim

                    ali = await nursery.start(functools.partial(serve_alipay_sim, host=config.host))
                    config = dataclasses.replace(
                        config, alipay_url=ali.gateway_url, alipay_app_id=ali.app_id,
                        alipay_app_private_key_pem=ali.app_private_key_pem,
                        alipay_public_key_pem=ali.alipay_public_key_pem, alipay_template_id=ali.template_id,
                    )
                    print(f"Alipay simulator: {ali.base_url}  (messages: {ali.base_url}/_sim/messages)", flush=True)

                async def run_hub(task_status: trio.TaskStatus[str]) -> None:
                    try:
                        await serve(config, database_url=database_url, task_status=task_status)
                    finally:
                        nursery.cancel_scope.cancel()  # the simulators go when the hub goes

                base = await nursery.start(run_hub)
                print(f"CareHub listening on {base}  (ops dashboard: {base}/ops)", flush=True)
                if config.seed_demo:
                    print(
                        f"demo accounts: admin, ops, doctor1..6, pharmacist1 (password {DEMO_PASSWORD} + TOTP secret"
                        f" {DEMO_TOTP_SECRET}), patients 13800138001..4 (SMS code)",
                        flush=True,
                    )
                    print(f"demo partner key (partner1, demo only): {DEMO_PARTNER_KEY_ID} {DEMO_PARTNER_KEY_SECRET}"
                          "  (publish API: docs/open-api.md)", flush=True)

        trio.run(main)
    except KeyboardInterrupt:
        pass
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


def _rotate_keys(args: argparse.Namespace) -> int:
    """Add a new data key, make it current, give running hubs time to reload, re-encrypt."""
    from carehub.app import key_file_path
    from carehub.storage.keyring import KeyRing, write_key_file

    config = Config.from_env(data_dir=args.data_dir, database_url=args.database_url)
    path = key_file_path(config)
    if path is None or not path.exists():
        print("no key file: set CAREHUB_KEY_FILE (keys given in CAREHUB_KEYS are rotated by whoever provisions them)")
        return 2
    ring = KeyRing.from_file(path)
    new_id = ring.add_key(ring.next_key_id())
    ring.rotate_to(new_id)
    write_key_file(path, ring)
    print(f"key {new_id} is now current in {path}; waiting {args.grace_seconds:.0f}s for running hubs to reload")
    embedded = None
    database_url = config.database_url
    if database_url is None:
        from carehub.storage.embedded import EmbeddedPostgres

        embedded = EmbeddedPostgres(Path(config.data_dir) / "pg")
        was_running = embedded.running
        database_url = embedded.start()
        if was_running:
            embedded = None  # the running hub's database: leave it running

    async def main() -> dict[str, int]:
        import trio_asyncio

        from carehub.storage.db import open_database
        from carehub.storage.rotation import rotate_all

        await trio.sleep(args.grace_seconds)
        async with trio_asyncio.open_loop(), open_database(database_url) as db:
            return await rotate_all(db, ring)

    try:
        changed = trio.run(main)
    finally:
        if embedded is not None:
            embedded.stop()
    print("re-encrypted: " + ", ".join(f"{table} {n}" for table, n in changed.items()))
    return 0


def _bots(args: argparse.Namespace) -> int:
    from carehub.bots.people import run_bots

    return trio.run(
        lambda: run_bots(args.url, patients=args.patients, doctors=args.doctors, duration=args.duration,
                         interval=args.interval)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="carehub", description="CareHub realtime hospital hub")
    parser.add_argument("--log-level", default=os.environ.get("CAREHUB_LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the hub (embedded PostgreSQL unless CAREHUB_DATABASE_URL is set)")
    serve.add_argument("--host", default=None, help="listen address (CAREHUB_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="listen port (CAREHUB_PORT, default 8080; 0 = any)")
    serve.add_argument("--data-dir", type=Path, default=None, help="data folder (CAREHUB_DATA_DIR, default .carehub)")
    serve.add_argument("--database-url", default=None, help="external PostgreSQL (CAREHUB_DATABASE_URL)")
    serve.add_argument("--no-seed", action="store_true", help="do not seed the demo hospital")
    serve.set_defaults(run=_serve)

    bots = sub.add_parser("bots", help="simulated patients and doctors chatting over the WebSocket")
    bots.add_argument("--url", default="http://127.0.0.1:8080")
    bots.add_argument("--patients", type=int, default=4)
    bots.add_argument("--doctors", type=int, default=2)
    bots.add_argument("--duration", type=float, default=0.0, help="seconds to run (0: until Ctrl-C)")
    bots.add_argument("--interval", type=float, default=1.0, help="seconds between a bot's messages")
    bots.set_defaults(run=_bots)

    keys = sub.add_parser("keys", help="field encryption keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    rotate = keys_sub.add_parser("rotate", help="new current key, then re-encrypt every sealed value (no downtime)")
    rotate.add_argument("--data-dir", type=Path, default=None)
    rotate.add_argument("--database-url", default=None)
    rotate.add_argument("--grace-seconds", type=float, default=10.0, help="time for running hubs to reload keys")
    rotate.set_defaults(run=_rotate_keys)

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
