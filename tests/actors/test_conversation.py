"""The conversation actor's pure ``handle()`` and its rule for who may write (no PostgreSQL, no Trio)."""

from __future__ import annotations

import datetime as dt

import pytest

from carehub.actors.conversation import Conversation, ConversationState, GetConversation, PostMessage
from carehub.hub import SYSTEM, Caller, Context, Refusal, make_address

TALK = Conversation()
KEY = "acc-a~acc-b"
NOW = dt.datetime(2026, 12, 4, 1, 0, tzinfo=dt.UTC)


def ctx(caller: Caller = SYSTEM) -> Context:
    return Context(make_address("conversation", KEY), KEY, NOW, caller)


def test_a_message_is_delivered_to_both_participants_sealed_and_numbered() -> None:
    sender = Caller("acc-a", frozenset({"patient", "real_name_verified"}))
    decision = TALK.handle(TALK.initial(KEY), PostMessage("你好", client_ref="c1"), ctx(sender))
    assert decision.reply == {"n": 1, "at": NOW.isoformat()}
    assert [(d.account_id, d.msg_id, d.sensitive) for d in decision.deliveries] == [
        ("acc-a", f"{KEY}:1", True), ("acc-b", f"{KEY}:1", True)]
    assert decision.deliveries[0].body["from"] == "acc-a" and decision.deliveries[0].body["client_ref"] == "c1"
    again = TALK.handle(decision.state, PostMessage("在吗"), ctx(sender))
    assert again.reply["n"] == 2


@pytest.mark.parametrize(("text", "code"), [("   ", "empty_message"), ("字" * 4001, "message_too_long")])
def test_what_a_conversation_refuses(text: str, code: str) -> None:
    with pytest.raises(Refusal) as refused:
        TALK.handle(TALK.initial(KEY), PostMessage(text), ctx())
    assert refused.value.code == code


def test_reading_changes_nothing() -> None:
    decision = TALK.handle(ConversationState(["acc-a", "acc-b"], 3, "t"), GetConversation(), ctx())
    assert decision.reply == {"posted": 3, "last_at": "t"} and not decision.writes


@pytest.mark.parametrize(("key", "ok"), [("acc-b~acc-a", True), ("acc-a", False), ("acc-a~acc-a", False),
                                         ("~acc-a", False)])
def test_a_conversation_key_names_two_different_accounts(key: str, ok: bool) -> None:
    if ok:
        assert TALK.initial(key).participants == ["acc-a", "acc-b"]
    else:
        with pytest.raises(Refusal):
            TALK.initial(key)


CALLERS = [
    ("the system", SYSTEM, True),
    ("a participant doctor", Caller("acc-b", frozenset({"doctor"})), True),
    ("a verified participant patient", Caller("acc-a", frozenset({"patient", "real_name_verified"})), True),
    ("an outsider", Caller("acc-c", frozenset({"doctor"})), False),
]


@pytest.mark.parametrize(("caller", "allowed"), [c[1:] for c in CALLERS], ids=[c[0] for c in CALLERS])
def test_who_may_write(caller: Caller, allowed: bool) -> None:
    assert TALK.may_call(caller, KEY, PostMessage("hi")) is allowed


def test_a_patient_must_be_real_name_verified_to_write() -> None:
    with pytest.raises(Refusal) as refused:
        TALK.may_call(Caller("acc-a", frozenset({"patient"})), KEY, PostMessage("hi"))
    assert refused.value.code == "verification_required"
