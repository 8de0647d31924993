"""The exception tree of pg-jobqueue.

::

    JobQueueError
    ├── InvalidJobError          (also ValueError)   bad input, raised before any SQL
    ├── JobNotFoundError         (also LookupError)  no job or bundle with that id
    ├── NotInitializedError                          no service set up yet
    ├── ServiceClosedError                           the service was closed
    ├── RegistrationError        (also ValueError)   duplicate or late handler registration
    ├── JobFailedError                               a synchronous job's handler failed
    └── DatabaseError                                the database failed; original as __cause__
"""

from __future__ import annotations

from uuid import UUID


class JobQueueError(Exception):
    """Base class of every error raised by pg-jobqueue."""


class InvalidJobError(JobQueueError, ValueError):
    """A job, bundle or argument was rejected before anything reached the database."""


class JobNotFoundError(JobQueueError, LookupError):
    """No job (or job bundle) has the given id."""

    def __init__(self, what: str, id: UUID | str) -> None:
        super().__init__(f"{what} {id} not found")
        self.id = id


class NotInitializedError(JobQueueError):
    """A module function was called before any service was set up."""


class ServiceClosedError(JobQueueError):
    """A method was called on a service after its close()."""


class RegistrationError(JobQueueError, ValueError):
    """A job type was registered twice, or while worker threads run."""


class JobFailedError(JobQueueError):
    """A job run synchronously failed; the handler's exception is the ``__cause__``."""

    def __init__(self, job_type: str, job_id: UUID, message: str) -> None:
        super().__init__(f"job {job_id} of type {job_type!r} failed: {message}")
        self.job_type = job_type
        self.job_id = job_id


class DatabaseError(JobQueueError):
    """The database raised an error; the driver's exception is the ``__cause__``."""
