"""Outpatient's domain errors."""

from __future__ import annotations


class BookingRefused(Exception):
    def __init__(self, message: str, *, status: int = 409, code: str = "refused") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
