"""OpenTelemetry spans for jobs: one for each enqueue, one for each attempt, linked through
the W3C trace context stored with the job, so a request's trace continues into its jobs.

Needs ``opentelemetry-api`` (``pip install 'pg-jobqueue[otel]'``) and, to export spans,
an SDK and exporter of your choice::

    from jobworker_pg.tracing import instrument
    instrument(service)        # enqueue spans + attempt spans on jobworker's default pool

An attempt's span is a child of the span that enqueued the job (the trace context is
read from the job's row when the attempt starts: one small query per attempt, only while
instrumented). Spans follow the OpenTelemetry messaging conventions: ``PRODUCER`` for
enqueue, ``CONSUMER`` for an attempt; a failed attempt records its exception.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import Token
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

import jobworker
from jobqueue import Job
from jobworker import WorkerObserver, WorkerPool
from jobworker_pg._service import PostgresService
from jobworker_pg._trace_hook import set_enqueue_hook

__all__ = ["AttemptTracing", "instrument", "uninstrument"]

_TRACER_NAME = "jobworker_pg"
_instrumented: list[tuple[WorkerPool, WorkerObserver]] = []


def _job_type_of(jobs: Sequence[Job]) -> str:
    types = {j.type for j in jobs}
    return types.pop() if len(types) == 1 else "mixed"


class _EnqueueSpans:
    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    @contextmanager
    def __call__(self, action: str, jobs: Sequence[Job]) -> Iterator[dict[str, str] | None]:
        job_type = _job_type_of(jobs)
        attributes: dict[str, Any] = {
            "messaging.system": "jobqueue",
            "messaging.operation.type": "send",
            "messaging.destination.name": job_type,
            "messaging.batch.message_count": len(jobs),
            "jobqueue.action": action,
        }
        if len(jobs) == 1:
            attributes["messaging.message.id"] = str(jobs[0].id)
        with self._tracer.start_as_current_span(
            f"jobqueue enqueue {job_type}", kind=SpanKind.PRODUCER, attributes=attributes
        ):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            yield carrier or None


class AttemptTracing(WorkerObserver):
    """A pool observer: a ``CONSUMER`` span around each attempt, child of the job's enqueue
    span (when it was traced) and current while the handler runs, so the handler's own spans
    nest under it."""

    def __init__(self, service: PostgresService, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._service = service
        self._tracer = trace.get_tracer(_TRACER_NAME, tracer_provider=tracer_provider)

    def attempt_started(self, job: Job) -> object:
        carrier = self._service.get_trace_context(job.id)
        parent = propagate.extract(carrier) if carrier else None
        span = self._tracer.start_span(
            f"jobqueue process {job.type}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "jobqueue",
                "messaging.operation.type": "process",
                "messaging.destination.name": job.type,
                "messaging.message.id": str(job.id),
                "jobqueue.attempt": job.attempt,
                "jobqueue.origin": job.origin,
            },
        )
        token = context.attach(trace.set_span_in_context(span))
        return span, token

    def attempt_ended(self, job: Job, state: object, error: BaseException | None, seconds: float) -> None:
        assert isinstance(state, tuple)  # what attempt_started returned
        span: trace.Span = state[0]
        token: Token[Context] = state[1]
        try:
            if error is not None:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            span.end()
        finally:
            context.detach(token)


def instrument(
    service: PostgresService,
    *,
    pool: WorkerPool | None = None,
    tracer_provider: trace.TracerProvider | None = None,
) -> AttemptTracing:
    """Trace every enqueue (any PostgresService in this process) and the attempts of
    ``pool`` (default: jobworker's default pool, from its next start). Returns the observer."""
    tracer = trace.get_tracer(_TRACER_NAME, tracer_provider=tracer_provider)
    set_enqueue_hook(_EnqueueSpans(tracer))
    observer = AttemptTracing(service, tracer_provider)
    target = pool if pool is not None else jobworker.default_pool()
    target.add_observer(observer)
    _instrumented.append((target, observer))
    return observer


def uninstrument() -> None:
    """Undo :func:`instrument`: no more spans (pools running now stop at their next start)."""
    set_enqueue_hook(None)
    while _instrumented:
        target, observer = _instrumented.pop()
        target.remove_observer(observer)
