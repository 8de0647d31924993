"""The exception tree of pg-jobqueue.

::

    JobQueueError
    ├── InvalidJobError          (also ValueError)   bad input, raised before any SQL
    ├── JobNotFoundError         (also LookupError)  no job or bundle with that id
    ├── NotInitializedError                          no service set up yet
    ├── ServiceClosedError                           the service was closed
    ├── RegistrationError        (also ValueError)   duplicate or late handler registration
    ├── JobFailedError                               a synchronous job's handler failed
    ├── DuplicateJobError                            a unique job exists (on_conflict="raise")
    ├── WaitTimeoutError         (also TimeoutError) wait_for_job / wait_for_bundle timed out
    └── DatabaseError                                the database failed; original as __cause__
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

if TYPE_CHECKING:
    from jobqueue._models import Job


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


class WaitTimeoutError(JobQueueError, TimeoutError):
    """A job or bundle did not stop for good within the time ``wait_for_*`` was given."""

    def __init__(self, what: str, id: UUID, timeout: float) -> None:
        super().__init__(f"{what} {id} did not stop within {timeout:g} s")
        self.id = id
        self.timeout = timeout


class DatabaseError(JobQueueError):
    """The database raised an error; the driver's exception is the ``__cause__``."""


class DuplicateJobError(JobQueueError):
    """An added job has the ``unique_key`` of a job that exists already (unfinished, or
    created within ``unique_for``), and was built with ``on_conflict="raise"``. Nothing was
    written; the job that holds the key is ``existing``."""

    def __init__(self, unique_key: str, existing: Job) -> None:
        super().__init__(
            f"a job with unique_key {unique_key!r} exists already: {existing.id} ({existing.state.value})"
        )
        self.unique_key = unique_key
        self.existing = existing
