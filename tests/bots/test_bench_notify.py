"""The notify benchmark's pure parts: its partner signature and its reconciliation counting (issue #18)."""

from __future__ import annotations

from carehub.bots.bench.notify import duplicates_by_key, reconcile, signed_headers
from carehub.identity.partners import sign


def test_the_bench_signs_a_partner_request_as_carehub_checks_it() -> None:
    body = b'{"messages": []}'
    headers = signed_headers("pk_x", "s3cret", "POST", "/api/v1/open/messages/batch", body, now=1_700_000_000,
                             nonce="n" * 20)
    assert headers["X-CareHub-Timestamp"] == "1700000000"
    assert headers["X-CareHub-Signature"] == sign("s3cret", "POST", "/api/v1/open/messages/batch", "1700000000",
                                                  "n" * 20, body)


def test_duplicates_are_provider_messages_beyond_the_first_per_key() -> None:
    keys = ["a:wechat", "b:wechat", "a:wechat", "a:wechat", None, "c:wechat"]
    assert duplicates_by_key(keys) == (2, 1)
    assert duplicates_by_key([]) == (0, 0)


def test_the_reconciliation_counts_what_the_run_added() -> None:
    before = {"sent": 3, "in_app": 1}
    after = {"sent": 93, "in_app": 6, "dead": 2, "retrying": 1}
    rec = reconcile(100, before, after)
    assert (rec.delivered, rec.dead_lettered, rec.not_final, rec.lost, rec.extra) == (95, 2, 1, 3, 0)
    # a repeat that made a second notice shows as extra, not as delivered beyond what was accepted
    assert reconcile(2, {}, {"sent": 3}).extra == 1
