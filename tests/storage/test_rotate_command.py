"""`carehub keys rotate`: a new current key, every sealed value re-encrypted, a running hub keeps reading."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import trio

from carehub.storage.keyring import KeyRing, write_key_file

from ..servers import KEYRING, run_server

ROOT = str(Path(__file__).resolve().parents[2])


async def test_rotating_keys_re_encrypts_everything_while_the_hub_keeps_serving(
    database_url: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "keys.json"
    write_key_file(key_file, KeyRing.from_json(KEYRING.to_json()))
    os.environ["CAREHUB_KEY_FILE"] = str(key_file)
    try:
        with trio.fail_after(60):
            async with run_server(database_url, keyring=None) as srv:
                token = await srv.token("patient1")
                env = dict(os.environ, PYTHONPATH=ROOT)
                done = await trio.run_process(
                    [sys.executable, "-m", "carehub", "keys", "rotate", "--database-url", database_url,
                     "--grace-seconds", "3"],
                    env=env, capture_stdout=True,
                )
                assert b"key k2 is now current" in done.stdout
                async with srv.http(token) as http:
                    shown = (await http.get("/api/v1/me/patients")).json()["patients"]
                assert shown and shown[0]["name"] == "张*"
                db = srv.app.services.db
                sealed = [r[0] for r in await db.fetch("SELECT name_enc FROM patients")]
                sealed += [r[0] for r in await db.fetch("SELECT phone_enc FROM accounts WHERE phone_enc IS NOT NULL")]
                names = [r[0] for r in await db.fetch(
                    "SELECT display_name_enc FROM accounts WHERE display_name_enc IS NOT NULL")]
                async with srv.http(token) as http:
                    me = (await http.get("/api/v1/me")).json()
    finally:
        del os.environ["CAREHUB_KEY_FILE"]
    assert sealed and all(value.startswith("sm4gcm:k2:") for value in sealed)
    assert names and all(value.startswith("sm4gcm:k2:") for value in names), "patients' names rotate too"
    assert me["name"] == "张三"
