"""What the directory refuses, by code (no HTTP status).

::

    CareHubError (carehub.errors)
    └── DirectoryError          "refused": a directory change that cannot be done
        └── DirectoryInvalid    "invalid": a value is not acceptable (the message names the field, in Chinese)
            └── ImportRefused   "invalid": a doctors' CSV file has errors; ``lines`` holds (line, message)

The repositories (:mod:`carehub.storage.directory`) raise the generic :class:`carehub.errors.NotFound`
(``not_found``), :class:`~carehub.errors.Conflict` (``conflict``) and :class:`~carehub.errors.Invalid`
(``invalid``): storage sits below the domain and does not know its classes.
"""

from __future__ import annotations

from collections.abc import Sequence

from carehub.errors import CareHubError, Invalid

__all__ = ["DirectoryError", "DirectoryInvalid", "ImportRefused"]


class DirectoryError(CareHubError):
    """A directory change or lookup that cannot be done; the message is for the user (Chinese)."""


class DirectoryInvalid(DirectoryError, Invalid):
    code = "invalid"


class ImportRefused(DirectoryInvalid):
    """The file has errors: nothing was imported. ``lines`` holds (line number, message)."""

    def __init__(self, message: str, lines: Sequence[tuple[int, str]] = ()) -> None:
        super().__init__(message)
        self.lines = list(lines)
