"""The one exception tree of GridPatrol.

Third-party errors are translated once, at the boundary where they occur, with ``raise ... from err``.
The API maps these to HTTP answers in its exception handlers; nothing below ``api/`` raises HTTP errors.
"""

from __future__ import annotations


class GridPatrolError(Exception):
    """Base of every error GridPatrol raises on purpose."""


class ConfigError(GridPatrolError):
    """Settings or a configuration file are wrong; the message names the field."""


class InvalidInput(GridPatrolError):
    """Input data is wrong. ``where`` names the row/feature and ``field`` the bad field."""

    def __init__(self, message: str, *, where: str | None = None, field: str | None = None) -> None:
        self.where = where
        self.field = field
        prefix = ""
        if where:
            prefix += f"{where}: "
        if field:
            prefix += f"field '{field}': "
        super().__init__(prefix + message)
        self.reason = message


class NotFound(GridPatrolError):
    """The thing does not exist, or the caller may not know it exists."""


class Conflict(GridPatrolError):
    """The request clashes with the current state (duplicate code, illegal transition...)."""


class AccessDenied(GridPatrolError):
    """The caller is known but may not do this (a role or scope refusal)."""


class Unavailable(GridPatrolError):
    """A service or part needed for this request is not available here or right now."""


class AuthError(GridPatrolError):
    """The caller could not be authenticated."""


class CameraError(GridPatrolError):
    """A camera could not be reached or described."""


class StreamError(CameraError):
    """An RTSP/file stream failed to open or broke while reading."""


class DetectorError(GridPatrolError):
    """A detector back-end could not be built or failed on a frame."""


class BusError(GridPatrolError):
    """The message bus could not deliver or receive."""
