"""The bench's account provisioning against a real hub (tests/servers.py), as ``./scripts/bench`` does it."""

from __future__ import annotations

import trio

from carehub.bots.bench.accounts import Accounts, sign_in
from carehub.demo import DEMO_PASSWORD, DEMO_TOTP_SECRET

from ..servers import Server


async def test_bench_accounts_of_roles_with_the_same_initial_get_logins_of_their_own(server: Server) -> None:
    """``partner``, ``patient`` and ``pharmacist`` all begin with "p": each role has its own logins."""
    accounts = Accounts(server.base, "admin", DEMO_PASSWORD, "t1", admin_totp_secret=DEMO_TOTP_SECRET)
    admin, _ = await sign_in(server.base, "admin", DEMO_PASSWORD, totp_secret=DEMO_TOTP_SECRET, totp_first=True)
    with trio.fail_after(60):
        made = {role: await accounts.provision(role, 0, 2, admin) for role in ("patient", "partner")}
    logins = [a.login for pool in made.values() for a in pool]
    assert len(set(logins)) == 4
    assert all(a.token for pool in made.values() for a in pool)
