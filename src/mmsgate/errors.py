"""Every exception mmsgate raises on purpose, under one root.

    MmsgateError
    ├── ConfigError          the configuration file or environment is invalid
    ├── StartupError         a command cannot start: database, data dir, port; says the fix
    ├── AccountError         an account change is refused (a sender another account owns …)
    ├── BodyTooLarge         a request body is over its route's limit
    └── ApiError             a request is refused; carries its Sinch error code
        └── MediaError       a slide's media could not be fetched or is unusable

An ApiError becomes a `Failure` response in exactly one place: the API's error handler.
"""

from __future__ import annotations

from mmsgate.codes import ErrorCode


class MmsgateError(Exception):
    """Root of every mmsgate error."""


class ConfigError(MmsgateError):
    """The configuration is invalid; the message names the bad key."""


class StartupError(MmsgateError):
    """A command cannot start (database unreachable or not migrated, data dir unusable, port
    taken); the message names the problem and what to do about it."""


class AccountError(MmsgateError):
    """An account cannot be created, changed or deleted as asked; the message says why."""


class BodyTooLarge(MmsgateError):
    """A request body is over `limit` bytes: declared so, or counted while it streamed in."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"the body is larger than {limit} bytes")


class ApiError(MmsgateError):
    """A request refused with a Sinch error code and an `error-info` text."""

    def __init__(self, code: ErrorCode, info: str | None = None) -> None:
        self.code = code
        self.info = info or code.text
        super().__init__(f"{code.value}: {self.info}")


class MediaError(ApiError):
    """A slide's media could not be fetched, is too big, or is not what it claims to be."""
