"""Durable bundle handlers: a completion job per finished bundle runs the handler once.

The database enqueues a job of type ``BUNDLE_JOB_PREFIX + bundle_type`` with the
payload ``{"bundle_id": ..., "bundle_type": ..., "bundle": {...}}`` in the transaction
that stops the bundle's last job (for the bundle types declared with
``WorkerDatabase.declare_bundle_handlers``). ``bundle`` is the bundle row with its jobs as
they were then, so the handler calls the user's function with it even when the bundle
was deleted since (go-jobqueue's default listener deletes a stopped bundle at once).
Completion jobs enqueued by 0.1.0 carry no ``bundle``: their handler loads it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ValidationError

from jobqueue import InvalidJobError, Job, JobBundle, RegistrationError
from jobqueue._constructors import MAX_NAME_LENGTH, check_name
from jobworker._awaitables import is_async_callable
from jobworker._context import current_job_context
from jobworker._database import BUNDLE_JOB_PREFIX, WorkerDatabase
from jobworker._errors import InvalidPayloadError

#: A durable bundle handler: called once with the completed bundle (and its jobs).
BundleHandler = Callable[[JobBundle], Any]


class _BundlePayload(BaseModel):
    bundle_id: UUID
    bundle_type: str
    bundle: JobBundle | None = None  # the bundle as it stopped (None from 0.1.0's schema)


def bundle_job_type(bundle_type: str) -> str:
    """The job type of the completion jobs of ``bundle_type``; RegistrationError if invalid."""
    try:
        check_name(bundle_type, "bundle type")
    except InvalidJobError as exc:
        raise RegistrationError(str(exc)) from exc
    job_type = BUNDLE_JOB_PREFIX + bundle_type
    if len(job_type) > MAX_NAME_LENGTH:
        raise RegistrationError(
            f"bundle type {bundle_type!r} is too long for a bundle handler: its completion job type "
            f"{BUNDLE_JOB_PREFIX!r} + type would be {len(job_type)} characters, over the limit of "
            f"{MAX_NAME_LENGTH} (bundle types of handlers may have at most "
            f"{MAX_NAME_LENGTH - len(BUNDLE_JOB_PREFIX)})"
        )
    return job_type


def _read_payload(job: Job) -> _BundlePayload:
    try:
        return _BundlePayload.model_validate(job.payload)
    except ValidationError as exc:
        raise InvalidPayloadError(
            f"payload of bundle completion job type {job.type!r} is invalid: {exc}"
        ) from None


def _database_to_load(bundle_type: str, bundle_id: UUID) -> WorkerDatabase:
    """The database to load a bundle from, for completion jobs that do not carry it (0.1.0's)."""
    database = current_job_context()._database
    if database is None:
        raise RuntimeError(
            f"bundle handler of {bundle_type!r} needs a database to load bundle "
            f"{bundle_id}; it cannot run through do_job()"
        )
    return database


def bundle_call(bundle_type: str, fn: BundleHandler) -> Callable[[Job], Any]:
    """The job handler of ``bundle_type``'s completion jobs: call ``fn`` with the bundle the job
    carries (or, for a job without one, the bundle loaded from the database).

    For an ``async def`` fn a bundle to load is loaded on a thread, keeping the event loop free."""
    if is_async_callable(fn):

        async def call_async(job: Job) -> Any:
            payload = _read_payload(job)
            bundle = payload.bundle
            if bundle is None:
                database = _database_to_load(bundle_type, payload.bundle_id)
                bundle = await asyncio.to_thread(database.get_job_bundle, payload.bundle_id)
            return await fn(bundle)

        return call_async

    def call(job: Job) -> Any:
        payload = _read_payload(job)
        if payload.bundle is not None:
            return fn(payload.bundle)
        return fn(_database_to_load(bundle_type, payload.bundle_id).get_job_bundle(payload.bundle_id))

    return call
