"""Exit codes of the client commands, which scripts can rely on, and the error that carries
one."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    USAGE = 1
    """Bad arguments or a request the gateway found invalid (or in conflict with the current
    state); also any other failure."""
    NOT_FOUND = 2
    AUTH = 3
    """Not signed in, credentials refused (expired, revoked) or a role too low."""
    UNREACHABLE = 4
    """The gateway, or the service behind it, cannot be reached or did not answer."""
    FAILED = 5
    """What was waited for ended badly: a request rejected or cancelled, a cycle or test run
    that failed."""
    TIMEOUT = 6
    """``--wait`` gave up at ``--timeout`` while the work went on."""


class ClientError(Exception):
    def __init__(self, message: str, code: ExitCode, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.hint = hint
