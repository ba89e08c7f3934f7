"""Errors a front end shows: each carries a catalogue message (`said`) saying what is wrong and what
to do; front ends render it in their reader's language, `str(err)` is its English (CLI, API, logs)."""

from campusvpn.texts.codes import Code
from campusvpn.texts.message import Message, say
from campusvpn.texts.render import MessageError


class ServiceError(MessageError):
    """Base class."""


class NotFound(ServiceError):
    pass


class Conflict(ServiceError):
    pass


class Invalid(ServiceError):
    pass


class Forbidden(ServiceError):
    pass


class Unavailable(ServiceError):
    """Storage failed (disk full, read-only file system, database down): nobody's fault, try later.
    The cause is logged for the operators (`service.context`); the user reads only this."""

    SAID: Message = say(Code.ERR_UNAVAILABLE)

    def __init__(self, cause: str = "") -> None:
        super().__init__(self.SAID)
        self.cause = cause
