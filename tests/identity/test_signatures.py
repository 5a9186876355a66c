"""SM2 signatures of doctors: canonical content, verified on read, broken ones reported (DOC-9)."""

from __future__ import annotations

import dataclasses

from ..servers import Server

RECORD = {"patient": "P1", "diagnosis": "原发性高血压", "advice": ["低盐饮食", "每日测量血压"]}


async def test_a_doctors_signature_verifies_and_a_changed_record_does_not(server: Server) -> None:
    signatures = server.app.services.signatures
    doctor = await server.account_id("doctor1")
    signature = await signatures.sign(doctor, RECORD)
    assert await signatures.verify(RECORD, signature)
    assert not await signatures.verify({**RECORD, "diagnosis": "正常"}, signature)


async def test_a_signature_claimed_for_another_doctor_is_broken(server: Server) -> None:
    signatures = server.app.services.signatures
    signature = await signatures.sign(await server.account_id("doctor1"), RECORD)
    forged = dataclasses.replace(signature, signer=await server.account_id("doctor2"))
    assert not await signatures.verify(RECORD, forged)


async def test_what_an_old_key_signed_still_verifies_after_the_doctor_gets_a_new_key(server: Server) -> None:
    signatures = server.app.services.signatures
    doctor = await server.account_id("doctor3")
    old = await signatures.sign(doctor, RECORD)
    await signatures.issue_key(doctor)
    new = await signatures.sign(doctor, RECORD)
    assert old.key_id != new.key_id
    assert await signatures.verify(RECORD, old) and await signatures.verify(RECORD, new)


async def test_signing_keys_are_stored_sealed(server: Server) -> None:
    rows = await server.app.services.db.fetch("SELECT private_enc FROM signing_keys")
    assert len(rows) == 7 and all(r["private_enc"].startswith("sm4gcm:") for r in rows)
