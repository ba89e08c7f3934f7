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
