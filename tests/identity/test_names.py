"""People's real names are personal data (docs/security.md): sealed at rest, masked where others see them."""

from __future__ import annotations

import subprocess

import trio

from ..servers import Server, run_server
from .test_sign_in import pg_dump

#: the demo patients' names (carehub/demo.py)
PATIENT_NAMES = ("张三", "李四", "王五", "赵六")


def test_a_database_dump_holds_no_plaintext_patient_name(database_url: str) -> None:
    dump = subprocess.run([pg_dump(), "--data-only", database_url], capture_output=True, text=True, check=True)
    for name in PATIENT_NAMES:
        assert name not in dump.stdout, name
    assert "李建国" in dump.stdout, "doctors' names are public and stay plain"


async def test_a_patient_sees_their_own_name_and_others_only_the_masked_one(server: Server) -> None:
    async with server.http(await server.token("patient1")) as http:
        me = (await http.get("/api/v1/me")).json()
    assert me["name"] == "张三"
    db = server.app.services.db
    listed = await db.fetchval("SELECT display_name FROM accounts WHERE login = 'patient1'")
    doctor = await db.fetchval("SELECT display_name FROM accounts WHERE login = 'doctor1'")
    assert listed == "张*" and doctor == "李建国"


async def test_names_stored_before_sealing_are_sealed_at_start_up(database_url: str) -> None:
    with trio.fail_after(60):
        async with run_server(database_url) as srv:  # a database as it was before migration 0014
            await srv.app.services.db.execute(
                "UPDATE accounts SET display_name = '王五', display_name_enc = NULL WHERE login = 'patient3'"
            )
        async with run_server(database_url) as srv:
            row = await srv.app.services.db.fetchrow(
                "SELECT display_name, display_name_enc FROM accounts WHERE login = 'patient3'"
            )
            async with srv.http(await srv.token("patient3")) as http:
                me = (await http.get("/api/v1/me")).json()
    assert row is not None and row["display_name"] == "王*" and row["display_name_enc"].startswith("sm4gcm:")
    assert me["name"] == "王五"
