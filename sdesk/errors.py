"""Errors a user can cause, each with the exit code the CLI reports."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    BAD_INPUT = 2
    NOT_FOUND = 3
    CONFLICT = 4
    PERMISSION = 5


class SdeskError(Exception):
    """An expected failure: the CLI prints `error: <message>` and exits with `code`."""

    code = ExitCode.ERROR


class BadInput(SdeskError):
    code = ExitCode.BAD_INPUT


class NotFound(SdeskError):
    code = ExitCode.NOT_FOUND


class Conflict(SdeskError):
    code = ExitCode.CONFLICT


class InvalidTransition(Conflict):
    """A lifecycle move the ticket's current status does not allow."""


class PermissionDenied(SdeskError):
    code = ExitCode.PERMISSION


class AuditBroken(SdeskError):
    """The event hash chain does not verify."""

