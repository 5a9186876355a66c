"""The one place where errors become HTTP statuses. Bodies: ``{"error": {"code", "message"}}``."""

from __future__ import annotations

from carehub.hub import HubError

HUB_STATUS = {
    "refused": 409,
    "invalid_transition": 409,
    "unknown_actor": 404,
    "bad_message": 400,
    "mailbox_full": 429,
    "actor_crashed": 500,
    "actor_quarantined": 503,
    "timeout": 504,
    "storage_unavailable": 503,
    "version_conflict": 503,
    "hub_stopping": 503,
    "already_handled": 409,
    "unknown_recipient": 422,
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


def from_hub(err: HubError) -> ApiError:
    return ApiError(HUB_STATUS.get(err.code, 409 if err.code.startswith("refused") else 400), err.code, err.message)
