"""The admin console's partner keys: listed without secrets, revoked for good, both audited (SCH-9, ADM-7)."""

from __future__ import annotations

from ..servers import Server
from .test_partners import BODY, PUBLISH, issue_key, send, signed_headers


async def test_keys_are_listed_without_their_secrets_and_a_revoked_key_is_refused(server: Server) -> None:
    key_id, secret = await issue_key(server, ["topics.publish"])
    partner = await server.account_id("partner1")
    async with server.http(await server.token("admin")) as http:
        listed = (await http.get("/api/v1/admin/partners")).json()
        revoked = await http.delete(f"/api/v1/admin/partners/{partner}/keys/{key_id}")
        again = await http.delete(f"/api/v1/admin/partners/{partner}/keys/{key_id}")
        unknown = await http.delete(f"/api/v1/admin/partners/{partner}/keys/pk_nothing")
        after = (await http.get("/api/v1/admin/partners")).json()
        audit = (await http.get("/api/v1/admin/audit", params={"action": "partner.key_revoke"})).json()
        issued = (await http.get("/api/v1/admin/audit", params={"action": "partner.key_issue"})).json()

    (mine,) = [p for p in listed["partners"] if p["id"] == partner]
    assert mine["login"] == "partner1" and mine["name"] == "区域挂号平台"
    (key,) = [k for k in mine["keys"] if k["key_id"] == key_id]
    assert key["operations"] == ["topics.publish"] and key["revoked"] is False
    assert secret not in str(listed) and "secret" not in str(listed)
    assert "topics.publish" in listed["operations"]

    assert revoked.status_code == 200 and revoked.json() == {"key_id": key_id, "revoked": True, "changed": True}
    assert again.status_code == 200 and again.json()["changed"] is False
    assert unknown.status_code == 404 and "不存在" in unknown.json()["error"]["message"]
    (key,) = [k for p in after["partners"] for k in p["keys"] if k["key_id"] == key_id]
    assert key["revoked"] is True

    refused = await send(server, "POST", PUBLISH, BODY, signed_headers(key_id, secret, "POST", PUBLISH, BODY))
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unknown_key"
    # revoked once (the second DELETE changed nothing), issued once, by the admin
    assert [e["detail"]["key_id"] for e in audit["entries"]] == [key_id]
    assert [e["target"] for e in issued["entries"] if e["detail"]["key_id"] == key_id] == [f"account/{partner}"]


async def test_keys_belong_to_partner_accounts_only(server: Server) -> None:
    doctor = await server.account_id("doctor1")
    key_id, _ = await issue_key(server, ["directory.read"])
    async with server.http(await server.token("admin")) as http:
        to_doctor = await http.post(f"/api/v1/admin/partners/{doctor}/keys", json={"operations": ["directory.read"]})
        # another account cannot revoke (or even name) the partner's key
        cross = await http.delete(f"/api/v1/admin/partners/{doctor}/keys/{key_id}")
    assert to_doctor.status_code == 404 and "合作方" in to_doctor.json()["error"]["message"]
    assert cross.status_code == 404
