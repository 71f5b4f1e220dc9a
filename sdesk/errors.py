"""Errors a user can cause, each with the exit code the CLI reports and the HTTP status `sdesk
serve` answers with. Every user-facing error class lives here (one tree), so that each face
maps a failure the same way."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    BAD_INPUT = 2
    NOT_FOUND = 3
    CONFLICT = 4
    PERMISSION = 5
    UNAVAILABLE = 6  # the database server cannot be reached or dropped the connection: run it again later
    INTERRUPTED = 130  # Ctrl-C (SIGINT) or SIGTERM: 128 + SIGINT, as a shell reports it


class SdeskError(Exception):
    """An expected failure: the CLI prints `error: <message>` and exits with `code`; `serve`
    answers `http_status` with the message as JSON."""

    code = ExitCode.ERROR
    # An sdesk error is expected, so not a 500: something the request asked for that cannot be
    # done. Classes that the client did not cause say so with their own status.
    http_status = 400


class BadInput(SdeskError):
    code = ExitCode.BAD_INPUT
    http_status = 400


class PatternError(BadInput):
    """A pattern RE2 cannot compile, or too long; the message says why, without the pattern
    (callers name it and where it was written)."""


class NotFound(SdeskError):
    code = ExitCode.NOT_FOUND
    http_status = 404


class Conflict(SdeskError):
    code = ExitCode.CONFLICT
    http_status = 409


class InvalidTransition(Conflict):
    """A lifecycle move the ticket's current status does not allow."""


class PermissionDenied(SdeskError):
    code = ExitCode.PERMISSION
    http_status = 403


class AuditBroken(SdeskError):
    """The event hash chain does not verify."""

    http_status = 500  # the desk's own records, not the request: retrying does not help


class StoreFault(SdeskError):
    """The database file cannot take this write: the disk is full, it is damaged, or its files
    were deleted or replaced under this process."""

    http_status = 503  # the server's database, not the request: a sender retries (Retry-After)


class ReadOnly(StoreFault):
    code = ExitCode.PERMISSION


class ServerUnavailable(StoreFault):
    """A PostgreSQL desk's server cannot be reached, is starting or stopping, or ended the
    connection mid-command: a write in progress was kept whole or not at all (one transaction),
    so running the same command again once the server is back completes it."""

    code = ExitCode.UNAVAILABLE


class NotSdesk(SdeskError):
    """The database path holds another program's file (or an empty one)."""

    http_status = 503


class SchemaTooNew(SdeskError):
    """A newer sdesk wrote this database; this one must not read or change it."""

    http_status = 503


class At(ValueError):
    """A check's error about a setting below the one it checks (`loc`: keys and list indexes
    from there), so that the error line names that setting and its line: the check that a
    policy's calendar exists raises At(["policies", 2, "calendar"], ...)."""

    def __init__(self, loc: list[str | int], message: str) -> None:
        super().__init__(message)
        self.loc = [str(part) for part in loc]
        self.message = message
