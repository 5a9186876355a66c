"""The hub's error vocabulary.

::

    HubError
    ├── Refusal                 a handler refused the message on purpose (bad request, wrong state)
    │   └── InvalidTransition   the message is not allowed in the actor's current state
    ├── UnknownActorKind        the address names a kind nobody registered
    ├── BadMessage              the message does not fit any of the kind's message types
    ├── MailboxFull             the actor's mailbox stayed full for the sender's whole wait
    ├── ActorCrashed            the handler raised; the actor restarts from its stored state
    ├── ActorQuarantined        the actor crashed too often and is parked until ops release it
    ├── AskTimeout              no reply in time; the message may still be handled
    ├── StorageUnavailable      the commit could not be made; nothing was changed
    └── HubStopping             the hub is shutting down

Every error has a stable machine ``code`` (used on the wire) and a message saying exactly what
was wrong. None carries an HTTP status: :mod:`carehub.http.errors` maps codes to statuses.
"""

from __future__ import annotations


class HubError(Exception):
    code = "hub_error"
    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Refusal(HubError):
    """Raised by a handler to refuse a message; not a crash, the actor keeps its state."""

    code = "refused"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class InvalidTransition(Refusal):
    """An event the lifecycle's table does not allow in the current state (:class:`carehub.hub.Lifecycle`).

    The default message names the state and the event; a domain passes the sentence its users
    read (and, where clients already know one, the wire ``code`` they know) instead.
    """

    code = "invalid_transition"

    def __init__(self, state: object, event: object, *, message: str | None = None, code: str | None = None) -> None:
        self.state = state
        self.event = event
        super().__init__(message or f"{_name(event)} is not allowed while {_name(state)}", code=code)


def _name(thing: object) -> str:
    """``Status.PAID`` -> ``paid``; a message class or instance -> its class name; a string as it is."""
    value = getattr(thing, "value", None)
    if isinstance(value, str):
        return value
    if isinstance(thing, str):
        return thing
    if isinstance(thing, type):
        return thing.__name__
    return type(thing).__name__


class UnknownActorKind(HubError):
    code = "unknown_actor"


class BadMessage(HubError):
    code = "bad_message"


class MailboxFull(HubError):
    code = "mailbox_full"
    retryable = True


class ActorCrashed(HubError):
    code = "actor_crashed"
    retryable = True


class ActorQuarantined(HubError):
    code = "actor_quarantined"


class AskTimeout(HubError):
    code = "timeout"
    retryable = True


class StorageUnavailable(HubError):
    code = "storage_unavailable"
    retryable = True


class VersionConflict(StorageUnavailable):
    """The stored state moved on under this activation (another writer); it reloads."""

    code = "version_conflict"


class HubStopping(HubError):
    code = "hub_stopping"
    retryable = True


class AlreadyHandled(HubError):
    """A stored message was dispatched twice; the second commit was rolled back."""

    code = "already_handled"


class UnknownRecipient(HubError):
    code = "unknown_recipient"
