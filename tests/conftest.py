"""Shared fixtures: a real PostgreSQL (found or started), a migrated template database seeded
with the demo hospital, and a fresh database per test cloned from it (``CREATE DATABASE ...
TEMPLATE``), so each test starts from the same hospital in a few milliseconds."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import trio
import trio_asyncio

from carehub.demo import seed_demo
from carehub.identity import Identity
from carehub.identity.patients import Patients
from carehub.identity.signatures import Signatures
from carehub.storage.audit import AuditLog
from carehub.storage.db import Database, open_database
from carehub.storage.identity.accounts import AccountStore
from carehub.storage.identity.patients import PatientStore
from carehub.storage.identity.signing_keys import SigningKeyStore
from carehub.storage.keyring import KeyRing
from carehub.storage.migrate import _migrate, migrations

from ._services import find_or_start_postgres
from .servers import KEYRING, Server, run_server


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def _admin(dsn: str, *statements: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for sql in statements:
                await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(scope="session")
def pg_admin_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    dsn, cleanup = find_or_start_postgres(tmp_path_factory.mktemp("pg"))
    try:
        yield dsn
    finally:
        cleanup()


async def _seed(dsn: str) -> None:
    async with trio_asyncio.open_loop(), open_database(dsn) as database:
        audit = AuditLog(database, KEYRING)
        patients = Patients(PatientStore(database), KEYRING, audit, None)
        signatures = Signatures(SigningKeyStore(database), KEYRING)
        await seed_demo(database, Identity(AccountStore(database, KEYRING), KEYRING, audit), patients, signatures)


@pytest.fixture(scope="session")
def template_db(pg_admin_dsn: str) -> Iterator[str]:
    name = f"carehub_tmpl_{uuid.uuid4().hex[:8]}"
    _admin(pg_admin_dsn, f'CREATE DATABASE "{name}"')

    async def run() -> None:
        conn = await asyncpg.connect(_with_database(pg_admin_dsn, name))
        try:
            await _migrate(conn, migrations())
        finally:
            await conn.close()

    asyncio.run(run())
    trio.run(_seed, _with_database(pg_admin_dsn, name))
    try:
        yield name
    finally:
        _admin(pg_admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(pg_admin_dsn: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for one test, dropped afterwards."""
    name = f"carehub_t_{uuid.uuid4().hex[:12]}"
    _admin(pg_admin_dsn, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    try:
        yield _with_database(pg_admin_dsn, name)
    finally:
        _admin(pg_admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def aio_loop() -> AsyncIterator[None]:
    async with trio_asyncio.open_loop():
        yield


@pytest.fixture
async def db(aio_loop: None, database_url: str) -> AsyncIterator[Database]:
    async with open_database(database_url) as database:
        yield database


@pytest.fixture
def keyring() -> KeyRing:
    return KEYRING


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


# ---- an in-process CareHub (tests/servers.py) for every test folder ----------------------------


@pytest.fixture
async def server(database_url: str) -> AsyncIterator[Server]:
    # a cancel scope cannot end inside the server's nursery, so this bounds the whole test
    with trio.fail_after(120):
        async with run_server(database_url) as srv:
            yield srv


@pytest.fixture
def server_factory(database_url: str) -> Callable[..., Any]:
    return functools.partial(run_server, database_url)
