"""Every REST route x every role: allowed or denied, against the table below (SCH-1, ADM-1).

The table is the access policy written out; a new route fails the first test until it is added.
"""

from __future__ import annotations

import re

import trio

from carehub.bots.client import CallFailed, HubClient, connect

from ..servers import Server

EVERYONE = frozenset({"anonymous", "patient", "doctor", "pharmacist", "admin", "ops", "partner"})
SIGNED_IN_PEOPLE = frozenset({"patient", "doctor", "pharmacist", "admin", "ops"})

#: (method, path) -> roles that may use it
POLICY: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/healthz"): EVERYONE,
    ("GET", "/readyz"): EVERYONE,
    ("GET", "/metrics"): EVERYONE,
    ("GET", "/openapi.json"): EVERYONE,
    ("POST", "/api/v1/auth/login"): EVERYONE,
    ("POST", "/api/v1/auth/sms-code"): EVERYONE,
    ("POST", "/api/v1/auth/sms-login"): EVERYONE,
    ("GET", "/ops"): EVERYONE,
    ("GET", "/api/v1/departments"): EVERYONE,
    ("GET", "/api/v1/doctors"): EVERYONE,
    ("GET", "/api/v1/me"): SIGNED_IN_PEOPLE,
    ("GET", "/api/v1/me/stream"): SIGNED_IN_PEOPLE,
    ("GET", "/api/v1/me/patients"): SIGNED_IN_PEOPLE,
    ("POST", "/api/v1/me/patients"): SIGNED_IN_PEOPLE,
    ("PATCH", "/api/v1/me/patients/<patient_id>"): SIGNED_IN_PEOPLE,
    ("DELETE", "/api/v1/me/patients/<patient_id>"): SIGNED_IN_PEOPLE,
    ("POST", "/api/v1/me/patients/<patient_id>/default"): SIGNED_IN_PEOPLE,
    ("POST", "/api/v1/me/patients/<patient_id>/face"): SIGNED_IN_PEOPLE,
    ("POST", "/api/v1/me/patients/<patient_id>/face/result"): SIGNED_IN_PEOPLE,
    ("POST", "/api/v1/me/patients/<patient_id>/photo"): SIGNED_IN_PEOPLE,
    ("GET", "/api/v1/me/consents"): SIGNED_IN_PEOPLE,
    ("POST", "/api/v1/me/consents"): SIGNED_IN_PEOPLE,
    ("POST", "/api/v1/auth/logout"): SIGNED_IN_PEOPLE,
    ("POST", "/api/v1/call"): SIGNED_IN_PEOPLE,
    ("POST", "/api/v1/topics/publish"): frozenset({"admin", "ops", "partner"}),
    ("POST", "/api/v1/admin/accounts"): frozenset({"admin"}),
    ("POST", "/api/v1/admin/accounts/<account_id>/disable"): frozenset({"admin"}),
    ("GET", "/api/v1/admin/verifications"): frozenset({"admin"}),
    ("POST", "/api/v1/admin/verifications/<verification_id>/decide"): frozenset({"admin"}),
    ("GET", "/api/v1/ops/snapshot"): frozenset({"ops"}),
    ("GET", "/api/v1/ops/actors"): frozenset({"ops"}),
    ("POST", "/api/v1/ops/actors/<path:address>/release"): frozenset({"ops"}),
    ("POST", "/api/v1/admin/partners/<account_id>/keys"): frozenset({"admin"}),
    ("GET", "/api/v1/admin/partners"): frozenset({"admin"}),
    ("GET", "/api/v1/admin/accounts"): frozenset({"admin"}),
    ("GET", "/api/v1/admin/prices"): frozenset({"admin"}),
    ("DELETE", "/api/v1/admin/partners/<account_id>/keys/<key_id>"): frozenset({"admin"}),
    ("GET", "/api/v1/admin/news/<news_id>"): frozenset({"admin"}),
    ("GET", "/api/v1/admin/guide/<slug>"): frozenset({"admin"}),
    ("GET", "/api/v1/admin/audit"): frozenset({"admin"}),
    ("GET", "/api/v1/admin/roles"): frozenset({"admin"}),
    ("PUT", "/api/v1/admin/roles/<name>"): frozenset({"admin"}),
    ("PUT", "/api/v1/admin/accounts/<account_id>/roles"): frozenset({"admin"}),
    ("GET", "/api/v1/me/menus"): SIGNED_IN_PEOPLE,
    ("GET", "/api/v1/doctor/patients/<patient_id>"): frozenset({"doctor"}),
    ("POST", "/api/v1/doctor/patients/<patient_id>/break-glass"): frozenset({"doctor"}),
    ("GET", "/api/v1/admin/audit.csv"): frozenset({"admin"}),
    ("GET", "/api/v1/admin/audit/verify"): frozenset({"admin"}),
    # signed by a partner key instead (tests/identity/test_partners.py): no bearer role gets in
    ("POST", "/api/v1/open/topics/publish"): frozenset(),
    ("GET", "/api/v1/open/departments"): frozenset(),
    # the hospital directory and content (tests/directory/): public reads, admin edits
    ("GET", "/api/v1/hospital"): EVERYONE,
    ("GET", "/api/v1/campuses"): EVERYONE,
    ("GET", "/api/v1/departments/<department_id>"): EVERYONE,
    ("GET", "/api/v1/doctors/<doctor_id>"): EVERYONE,
    ("GET", "/api/v1/news"): EVERYONE,
    ("GET", "/api/v1/news/<news_id>"): EVERYONE,
    ("GET", "/api/v1/guide"): EVERYONE,
    ("GET", "/api/v1/guide/<slug>"): EVERYONE,
    ("GET", "/api/v1/announcements"): EVERYONE,
    ("POST", "/api/v1/announcements/<announcement_id>/read"): SIGNED_IN_PEOPLE,
    ("GET", "/api/v1/prices"): EVERYONE,
    ("GET", "/api/v1/triage"): EVERYONE,
    ("POST", "/api/v1/triage"): EVERYONE,
    ("PUT", "/api/v1/admin/hospital"): frozenset({"admin"}),
    ("PUT", "/api/v1/admin/settings"): frozenset({"admin"}),
    ("PUT", "/api/v1/admin/campuses/<campus_id>"): frozenset({"admin"}),
    ("GET", "/api/v1/admin/directory"): frozenset({"admin"}),
    ("POST", "/api/v1/admin/departments"): frozenset({"admin"}),
    ("PATCH", "/api/v1/admin/departments/<department_id>"): frozenset({"admin"}),
    ("POST", "/api/v1/admin/doctors"): frozenset({"admin"}),
    ("PATCH", "/api/v1/admin/doctors/<doctor_id>"): frozenset({"admin"}),
    ("POST", "/api/v1/admin/doctors/import"): frozenset({"admin"}),
    ("GET", "/api/v1/admin/news"): frozenset({"admin"}),
    ("POST", "/api/v1/admin/news"): frozenset({"admin"}),
    ("PATCH", "/api/v1/admin/news/<news_id>"): frozenset({"admin"}),
    ("GET", "/api/v1/admin/guide"): frozenset({"admin"}),
    ("PUT", "/api/v1/admin/guide/<slug>"): frozenset({"admin"}),
    ("GET", "/api/v1/admin/announcements"): frozenset({"admin"}),
    ("POST", "/api/v1/admin/announcements"): frozenset({"admin"}),
    ("PATCH", "/api/v1/admin/announcements/<announcement_id>"): frozenset({"admin"}),
    ("PUT", "/api/v1/admin/prices/<code>"): frozenset({"admin"}),
    ("GET", "/api/v1/admin/prices/history"): frozenset({"admin"}),
    ("GET", "/api/v1/admin/triage/rules"): frozenset({"admin"}),
    ("PUT", "/api/v1/admin/triage/rules/<rule_id>"): frozenset({"admin"}),
    ("DELETE", "/api/v1/admin/triage/rules/<rule_id>"): frozenset({"admin"}),
    # outpatient (carehub/http/rest/outpatient.py)
    ("GET", "/api/v1/sessions"): EVERYONE,
    ("GET", "/api/v1/doctors/<doctor_id>/days/<day>"): EVERYONE,
    ("GET", "/api/v1/doctors/<doctor_id>/card"): EVERYONE,
    ("GET", "/api/v1/display/<department_id>/calls"): EVERYONE,
    ("GET", "/api/v1/display/<department_id>/calls/wait"): EVERYONE,
    ("POST", "/api/v1/payments/wechat/notify"): EVERYONE,
    ("POST", "/api/v1/me/bookings"): SIGNED_IN_PEOPLE,
    ("GET", "/api/v1/me/bookings"): SIGNED_IN_PEOPLE,
    ("GET", "/api/v1/me/bookings/<booking_id>"): SIGNED_IN_PEOPLE,
    ("POST", "/api/v1/me/bookings/<booking_id>/cancel"): SIGNED_IN_PEOPLE,
    ("POST", "/api/v1/me/bookings/<booking_id>/pay"): SIGNED_IN_PEOPLE,
    ("POST", "/api/v1/me/bookings/<booking_id>/check-in"): SIGNED_IN_PEOPLE,
    ("GET", "/api/v1/me/bookings/<booking_id>/queue"): SIGNED_IN_PEOPLE,
    ("GET", "/api/v1/me/visits/today"): SIGNED_IN_PEOPLE,
    ("POST", "/api/v1/open/bookings"): frozenset(),
    ("POST", "/api/v1/open/bookings/<booking_id>/cancel"): frozenset(),
    ("GET", "/api/v1/doctor/queue/<period>"): frozenset({"doctor"}),
    ("POST", "/api/v1/doctor/queue/<period>/next"): frozenset({"doctor"}),
    ("POST", "/api/v1/doctor/queue/<period>/skip"): frozenset({"doctor"}),
    # message center (MSG-1, OUT-15): my inbox and preferences, templates and channels, dead letters
    ("GET", "/api/v1/me/notices"): SIGNED_IN_PEOPLE,
    ("GET", "/api/v1/me/notices/counts"): SIGNED_IN_PEOPLE,
    ("POST", "/api/v1/me/notices/read"): SIGNED_IN_PEOPLE,
    ("GET", "/api/v1/me/notice-preferences"): SIGNED_IN_PEOPLE,
    ("PUT", "/api/v1/me/notice-preferences"): SIGNED_IN_PEOPLE,
    ("GET", "/api/v1/admin/notice-templates"): frozenset({"admin"}),
    ("PUT", "/api/v1/admin/notice-templates/<kind>"): frozenset({"admin"}),
    ("DELETE", "/api/v1/admin/notice-templates/<kind>"): frozenset({"admin"}),
    ("POST", "/api/v1/admin/notice-templates/<kind>/preview"): frozenset({"admin"}),
    ("GET", "/api/v1/admin/notice-channels"): frozenset({"admin"}),
    ("PUT", "/api/v1/admin/notice-channels/<channel>"): frozenset({"admin"}),
    ("GET", "/api/v1/ops/notices/dead-letters"): frozenset({"ops"}),
    ("GET", "/api/v1/ops/notices/channels"): frozenset({"ops"}),
    ("POST", "/api/v1/ops/notices/<notice_id>/resend"): frozenset({"ops"}),
    # providers' reports (signed by the provider, not by a CareHub account)
    ("GET", "/api/v1/channels/wechat/events"): EVERYONE,
    ("POST", "/api/v1/channels/wechat/events"): EVERYONE,
    ("POST", "/api/v1/channels/sms/reports"): EVERYONE,
    # the publish API (MSG-1): partners sign, admins set their rules
    ("POST", "/api/v1/open/messages"): frozenset(),
    ("POST", "/api/v1/open/messages/batch"): frozenset(),
    ("GET", "/api/v1/open/messages/<message_id>"): frozenset(),
    ("POST", "/api/v1/open/messages/<message_id>/cancel"): frozenset(),
    ("GET", "/api/v1/admin/publish-rules"): frozenset({"admin"}),
    ("PUT", "/api/v1/admin/publish-rules/<partner_account_id>"): frozenset({"admin"}),
    # clinical alerts (MSG-7, DOC-19)
    ("POST", "/api/v1/open/fhir/DiagnosticReport"): frozenset(),
    ("GET", "/api/v1/doctor/alerts"): frozenset({"doctor"}),
    ("GET", "/api/v1/doctor/alerts/<alert_id>"): frozenset({"doctor"}),
    ("POST", "/api/v1/doctor/alerts/<alert_id>/ack"): frozenset({"doctor"}),
    ("GET", "/api/v1/ops/alerts"): frozenset({"ops"}),
    ("POST", "/api/v1/doctor/queue/<period>/recall"): frozenset({"doctor"}),
    ("POST", "/api/v1/doctor/queue/<period>/seen"): frozenset({"doctor"}),
    ("POST", "/api/v1/doctor/queue/<period>/priority"): frozenset({"doctor"}),
    ("GET", "/api/v1/doctor/sessions"): frozenset({"doctor"}),
    ("GET", "/api/v1/doctor/waiting/<period>"): frozenset({"doctor"}),
    ("POST", "/api/v1/doctor/rosters"): frozenset({"doctor"}),
    ("GET", "/api/v1/doctor/rosters"): frozenset({"doctor"}),
    ("GET", "/api/v1/admin/doctors/<doctor_id>/slot-rule"): frozenset({"admin"}),
    ("PUT", "/api/v1/admin/doctors/<doctor_id>/slot-rule"): frozenset({"admin"}),
    ("POST", "/api/v1/admin/rosters"): frozenset({"admin"}),
    ("GET", "/api/v1/admin/rosters"): frozenset({"admin"}),
    ("POST", "/api/v1/admin/rosters/<roster_id>/decide"): frozenset({"admin"}),
    ("GET", "/api/v1/admin/bookings"): frozenset({"admin"}),
    ("GET", "/api/v1/admin/blacklist"): frozenset({"admin"}),
    ("GET", "/api/v1/admin/statistics/bookings"): frozenset({"admin"}),
    ("GET", "/api/v1/admin/statistics/sessions"): frozenset({"admin"}),
    ("GET", "/api/v1/admin/statistics/payments"): frozenset({"admin"}),
    ("POST", "/api/v1/admin/blacklist/<entry_id>/lift"): frozenset({"admin"}),
    ("PUT", "/api/v1/admin/no-show-rule"): frozenset({"admin"}),
    ("GET", "/api/v1/admin/no-show-rule"): frozenset({"admin"}),
    ("GET", "/api/v1/admin/sessions"): frozenset({"admin"}),
    ("POST", "/api/v1/admin/sessions/<session_id>/cancel"): frozenset({"admin"}),
    ("POST", "/api/v1/admin/sessions/<session_id>/substitute"): frozenset({"admin"}),
    # outpatient bills and self-service test orders (carehub/http/rest/bills.py)
    ("GET", "/api/v1/me/bills"): SIGNED_IN_PEOPLE,
    ("GET", "/api/v1/me/bills/visits"): SIGNED_IN_PEOPLE,
    ("POST", "/api/v1/me/bills/pay"): SIGNED_IN_PEOPLE,
    ("GET", "/api/v1/me/bill-orders"): SIGNED_IN_PEOPLE,
    ("GET", "/api/v1/me/bill-orders/<out_trade_no>"): SIGNED_IN_PEOPLE,
    ("GET", "/api/v1/tests"): EVERYONE,
    ("POST", "/api/v1/me/test-orders"): SIGNED_IN_PEOPLE,
    ("GET", "/api/v1/admin/tests"): frozenset({"admin"}),
    ("PUT", "/api/v1/admin/tests/<code>"): frozenset({"admin"}),
    ("DELETE", "/api/v1/admin/tests/<code>"): frozenset({"admin"}),
    ("POST", "/api/v1/admin/bill-orders/<out_trade_no>/refund"): frozenset({"admin"}),
    ("POST", "/api/v1/admin/slip-codes"): frozenset({"admin"}),
    # channel bindings (carehub/http/rest/channel_bindings.py)
    ("GET", "/api/v1/admin/accounts/<account_id>/channel-bindings"): frozenset({"admin"}),
    ("PUT", "/api/v1/admin/accounts/<account_id>/channel-bindings"): frozenset({"admin"}),
    ("POST", "/api/v1/admin/channel-bindings"): frozenset({"admin"}),
}

LOGINS = {
    "patient": "patient1", "doctor": "doctor1", "pharmacist": "pharmacist1", "admin": "admin", "ops": "ops",
    "partner": "partner1",
}


def concrete(path: str) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: "counter/none" if m.group(1) == "address" else "none", path)


async def test_the_policy_table_covers_every_route(server: Server) -> None:
    declared = {(spec.method, spec.path) for spec in server.app.router.specs}
    assert declared == set(POLICY)


async def test_every_route_allows_exactly_the_roles_in_the_policy_table(server: Server) -> None:
    tokens: dict[str, str | None] = {"anonymous": None}
    for role, login in LOGINS.items():
        tokens[role] = await server.token(login)
    outcomes: list[tuple[str, str, str, int]] = []
    # sign-out last, so the other routes see live sessions
    routes = sorted(POLICY, key=lambda route: route[1] == "/api/v1/auth/logout")
    with trio.fail_after(120):
        for method, path in routes:
            for role, token in tokens.items():
                async with server.http(token) as http:
                    response = await http.request(method, concrete(path), json={})
                allowed = role in POLICY[(method, path)]
                status = response.status_code
                denied = status in (401, 403)
                if allowed == denied or status >= 500:
                    outcomes.append((method, path, role, status))
    assert outcomes == [], "routes whose answer does not match the policy (method, path, role, status)"


#: WebSocket operations -> roles that may use them
WS_POLICY: dict[str, frozenset[str]] = {
    "subscribe ops": frozenset({"ops"}),
    "subscribe broadcast/hall": SIGNED_IN_PEOPLE | {"partner"},
    "publish broadcast/hall": frozenset({"admin", "ops", "partner"}),
    "call own conversation": SIGNED_IN_PEOPLE,
}


async def test_every_websocket_operation_allows_exactly_the_roles_in_its_table(server: Server) -> None:
    doctor = await server.account_id("doctor2")
    mismatches = []
    with trio.fail_after(60):
        for role, login in LOGINS.items():
            token = await server.token(login)
            me = await server.account_id(login)
            async with connect(server.base, token) as client:
                await client.subscribe("ops")
                ops = await first_answer(client, "ops")
                await client.subscribe("broadcast/hall")
                hall = await first_answer(client, "broadcast/hall")
                try:
                    await client.publish("broadcast/hall", "notice", {"text": "x"})
                    published = True
                except CallFailed:
                    published = False
                try:
                    other = doctor if me != doctor else await server.account_id("patient1")
                    await client.call("conversation/" + "~".join(sorted([me, other])), "PostMessage", {"text": "hi"})
                    called = True
                except CallFailed as err:
                    called = err.code not in ("forbidden", "verification_required")
            for op, allowed in (("subscribe ops", ops), ("subscribe broadcast/hall", hall),
                                ("publish broadcast/hall", published), ("call own conversation", called)):
                if allowed != (role in WS_POLICY[op]):
                    mismatches.append((op, role, allowed))
    assert mismatches == []


async def test_every_websocket_command_allows_exactly_the_roles_of_its_route(server: Server) -> None:
    """A command is its route run from a frame: the route's row of the table decides."""
    commands = {spec.command: (spec.method, spec.path) for spec in server.app.router.specs if spec.command}
    assert commands, "no route is a command"
    mismatches = []
    with trio.fail_after(60):
        for role, login in LOGINS.items():
            async with connect(server.base, await server.token(login)) as client:
                for name, route in sorted(commands.items()):
                    try:
                        await client.command(name, {})
                        allowed = True
                    except CallFailed as err:
                        assert err.status is not None and err.status < 500, (name, role, err)
                        allowed = err.status not in (401, 403)
                    if allowed != (role in POLICY[route]):
                        mismatches.append((name, role, allowed))
    assert mismatches == []


async def first_answer(client: HubClient, topic: str) -> bool:
    """True when the subscription was confirmed, False when refused."""
    with trio.fail_after(5):
        while True:
            if not client.errors.statistics().current_buffer_used == 0:
                error = client.errors.receive_nowait()
                if error.get("ref") == topic:
                    return False
            try:
                event = client.events.receive_nowait()
            except trio.WouldBlock:
                await trio.sleep(0.01)
                continue
            if event.get("op") == "subscribed" and event.get("topic") == topic:
                return True
