"""Errors a front end shows as they are: each message says what is wrong and what to do."""


class ServiceError(Exception):
    """Base class; `str(err)` is a sentence fit for the person who asked."""


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

    MESSAGE = "The service is temporarily unavailable; try again in a few minutes."

    def __init__(self, cause: str = "") -> None:
        super().__init__(self.MESSAGE)
        self.cause = cause
