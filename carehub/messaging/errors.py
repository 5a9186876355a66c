"""The message center's refusals (codes mapped to statuses in carehub/http/errors.py)."""

from __future__ import annotations

from carehub.errors import CareHubError


class MessagingError(CareHubError):
    code = "messaging_refused"


class BadTemplate(MessagingError):
    """A template that could not always be rendered for its kind (refused when saved)."""

    code = "bad_template"


class UnknownKind(MessagingError):
    code = "unknown_notice_kind"


class UnknownRecipient(MessagingError):
    """No account, patient or phone the notice could reach."""

    code = "recipient_not_found"


class NotAllowed(MessagingError):
    """A partner publishing a kind or to a recipient its permissions do not cover."""

    code = "publish_not_allowed"


class NoticeNotFound(MessagingError):
    code = "notice_not_found"
