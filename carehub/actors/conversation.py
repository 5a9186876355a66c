"""A conversation between two accounts (patient and doctor, or any two people).

Address ``conversation/<account>~<account>`` with the two ids in sorted order. Each message
posted is committed with the conversation's state and delivered to both participants' streams
(so every device of the sender sees it too) before the sender gets the reply.
"""

from __future__ import annotations

import msgspec

from carehub.hub import Behaviour, Caller, Context, Decision, Deliver, Event, Refusal

MAX_TEXT = 4000


class ConversationState(msgspec.Struct):
    participants: list[str]
    posted: int = 0
    last_at: str | None = None


class PostMessage(msgspec.Struct, forbid_unknown_fields=True):
    """Sent by a participant: adds a message and delivers it to both participants."""

    text: str
    client_ref: str | None = None  # the sender's own id for the message, echoed back


class GetConversation(msgspec.Struct, forbid_unknown_fields=True):
    """Sent by a participant: how many messages, and when the last one came."""


def participants_of(key: str) -> list[str]:
    a, sep, b = key.partition("~")
    if not sep or not a or not b or a == b:
        raise Refusal(f"a conversation key is '<account>~<account>' with two different accounts, got {key!r}")
    return sorted([a, b])


class Conversation(Behaviour[ConversationState]):
    kind = "conversation"
    state_type = ConversationState
    messages = {"PostMessage": PostMessage, "GetConversation": GetConversation}

    def initial(self, key: str) -> ConversationState:
        return ConversationState(participants=participants_of(key))

    def handle(self, state: ConversationState, message: msgspec.Struct, ctx: Context) -> Decision[ConversationState]:
        match message:
            case PostMessage(text=text, client_ref=client_ref):
                if not text.strip():
                    raise Refusal("消息不能为空 (empty message)", code="empty_message")
                if len(text) > MAX_TEXT:
                    raise Refusal(f"消息过长, 最多 {MAX_TEXT} 字 (message too long)", code="message_too_long")
                sender = ctx.caller.account_id or "system"
                n = state.posted + 1
                at = ctx.now.isoformat()
                body = {"conversation": ctx.key, "n": n, "from": sender, "text": text, "at": at,
                        "client_ref": client_ref}
                new = ConversationState(state.participants, n, at)
                return Decision(
                    new,
                    reply={"n": n, "at": at},
                    events=(Event("MessagePosted", {"n": n, "from": sender, "length": len(text)}),),
                    deliveries=tuple(
                        Deliver(p, "chat.message", body, msg_id=f"{ctx.key}:{n}", sensitive=True)
                        for p in state.participants
                    ),
                )
            case GetConversation():
                return Decision.answer(state, {"posted": state.posted, "last_at": state.last_at})
        raise Refusal(f"conversation does not handle {type(message).__name__}")

    def summary(self, state: ConversationState) -> str:
        return f"{' & '.join(state.participants)}: {state.posted} messages"

    def may_call(self, caller: Caller, key: str, message: msgspec.Struct) -> bool:
        if caller.is_system:
            return True
        if "patient" in caller.roles and "real_name_verified" not in caller.roles:
            # internet-hospital rule: no online consultation before real-name verification
            raise Refusal("请先完成实名认证 (real-name verification required)", code="verification_required")
        try:
            return caller.account_id in participants_of(key)
        except Refusal:
            return False


