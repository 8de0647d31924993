"""pg-jobqueue core: jobs, bundles, the service protocol and the current service.

Quickstart (a producer)::

    import jobqueue
    from jobworker_pg import init_job_queue

    init_job_queue("postgresql://localhost/app")      # sets the default service
    job = jobqueue.add(jobqueue.new_job("email.send", "signup", {"to": "a@example.com"}))
    print(jobqueue.get_job(job.id).state)

This package imports no database driver; :mod:`jobworker_pg` provides the
PostgreSQL service and :mod:`jobworker` runs the jobs.
"""

from jobqueue._constructors import job_type_of, new_job, new_job_bundle
from jobqueue._current import (
    add,
    add_async,
    add_bundle,
    add_bundle_async,
    add_listener,
    add_many,
    add_many_async,
    cancel_job,
    close,
    delete_finished_jobs,
    delete_job,
    delete_job_bundle,
    get_all_jobs_started_before,
    get_all_jobs_to_do,
    get_all_jobs_with_errors,
    get_job,
    get_job_async,
    get_job_bundle,
    get_service,
    get_status,
    reset_job,
    reset_jobs,
    set_default_service,
    use_service,
)
from jobqueue._errors import (
    DatabaseError,
    DuplicateJobError,
    InvalidJobError,
    JobFailedError,
    JobNotFoundError,
    JobQueueError,
    NotInitializedError,
    RegistrationError,
    ServiceClosedError,
)
from jobqueue._listeners import (
    JobStoppedEvent,
    ListenerDispatcher,
    add_job_bundle_stopped_listener,
    add_job_stopped_listener,
    remove_job_bundle_of_type_stopped_listener,
    remove_job_bundle_stopped_listener,
    remove_job_stopped_listener,
    set_job_bundle_of_type_stopped_listener,
)
from jobqueue._models import AttemptError, Job, JobBundle, JobDesc, JobState, StateCounts, Status
from jobqueue._payload import DEFAULT_MAX_PAYLOAD_BYTES, max_payload_bytes, set_max_payload_bytes
from jobqueue._periodic import (
    ORPHANED_AFTER,
    PeriodicAdmin,
    PeriodicInfo,
    delete_periodic,
    disable_periodic,
    enable_periodic,
    get_periodic,
    list_periodic,
    next_run,
    run_periodic_now,
)
from jobqueue._service import Service, ServiceListener, Transaction

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "ORPHANED_AFTER",
    "AttemptError",
    "DatabaseError",
    "DuplicateJobError",
    "InvalidJobError",
    "Job",
    "JobBundle",
    "JobDesc",
    "JobFailedError",
    "JobNotFoundError",
    "JobQueueError",
    "JobState",
    "JobStoppedEvent",
    "ListenerDispatcher",
    "NotInitializedError",
    "PeriodicAdmin",
    "PeriodicInfo",
    "RegistrationError",
    "Service",
    "ServiceClosedError",
    "ServiceListener",
    "StateCounts",
    "Status",
    "Transaction",
    "add",
    "add_async",
    "add_bundle",
    "add_bundle_async",
    "add_job_bundle_stopped_listener",
    "add_job_stopped_listener",
    "add_listener",
    "add_many",
    "add_many_async",
    "cancel_job",
    "close",
    "delete_finished_jobs",
    "delete_job",
    "delete_job_bundle",
    "delete_periodic",
    "disable_periodic",
    "enable_periodic",
    "get_all_jobs_started_before",
    "get_all_jobs_to_do",
    "get_all_jobs_with_errors",
    "get_job",
    "get_job_async",
    "get_job_bundle",
    "get_periodic",
    "get_service",
    "get_status",
    "job_type_of",
    "list_periodic",
    "max_payload_bytes",
    "new_job",
    "new_job_bundle",
    "next_run",
    "remove_job_bundle_of_type_stopped_listener",
    "remove_job_bundle_stopped_listener",
    "remove_job_stopped_listener",
    "reset_job",
    "reset_jobs",
    "run_periodic_now",
    "set_default_service",
    "set_job_bundle_of_type_stopped_listener",
    "set_max_payload_bytes",
    "use_service",
]
