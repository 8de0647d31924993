"""OpenTelemetry: a span for each enqueue and each attempt, the attempt's a child of the
enqueue's through the trace context stored with the job (SDK in-memory exporter)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import wait_for
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import jobqueue
from jobworker import Registry, WorkerPool, WorkerSettings
from jobworker_pg import PostgresService
from jobworker_pg.tracing import instrument, uninstrument

SETTINGS = WorkerSettings().replace(heartbeat_interval=0.2, dead_for=2, job_timeout=30)


@pytest.fixture
def traced(
    service: PostgresService,
) -> Iterator[tuple[InMemorySpanExporter, TracerProvider, WorkerPool, Registry]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    registry = Registry()
    pool = WorkerPool(service, registry, SETTINGS, name="traced")
    instrument(service, pool=pool, tracer_provider=provider)
    try:
        yield exporter, provider, pool, registry
    finally:
        pool.stop_threads()
        uninstrument()


def test_an_attempt_continues_the_trace_of_the_request_that_enqueued_it(
    service: PostgresService, traced: tuple[InMemorySpanExporter, TracerProvider, WorkerPool, Registry]
) -> None:
    exporter, provider, pool, registry = traced
    tracer = provider.get_tracer("app")
    inner: list[int] = []

    def handle(job: jobqueue.Job) -> None:
        with tracer.start_as_current_span("send the mail") as span:
            inner.append(span.get_span_context().trace_id)
        if job.payload == "bad":
            raise ValueError("no such mailbox")

    registry.register("mail", handle)
    with tracer.start_as_current_span("POST /signup") as request:
        good = service.add_job(jobqueue.new_job("mail", "signup", "ok"))
        many = service.add_jobs([jobqueue.new_job("mail", "signup", "bad") for _ in range(120)])  # COPY path
    trace_id = request.get_span_context().trace_id
    untraced = service.add_job(jobqueue.new_job("mail", "cron", "ok"))  # no span around it
    assert service.get_trace_context(untraced.id) is not None  # an enqueue span of its own
    pool.start_threads(2)
    wait_for(
        lambda: service.get_job(good.id).succeeded and service.get_job(many[-1].id).stopped, 30, "jobs ran"
    )
    wait_for(
        lambda: len([s for s in exporter.get_finished_spans() if s.name == "jobqueue process mail"]) == 122,
        30,
    )
    spans = exporter.get_finished_spans()
    enqueues = [s for s in spans if s.kind is SpanKind.PRODUCER and s.context.trace_id == trace_id]
    assert [(s.attributes or {})["messaging.batch.message_count"] for s in enqueues] == [1, 120]
    assert all(
        s.parent is not None and s.parent.span_id == request.get_span_context().span_id for s in enqueues
    )
    attempts = {(s.attributes or {})["messaging.message.id"]: s for s in spans if s.kind is SpanKind.CONSUMER}
    good_attempt = attempts[str(good.id)]
    assert good_attempt.context.trace_id == trace_id
    assert good_attempt.parent is not None and good_attempt.parent.span_id == enqueues[0].context.span_id
    bad_attempt = attempts[str(many[0].id)]
    assert bad_attempt.parent is not None and bad_attempt.parent.span_id == enqueues[1].context.span_id
    assert bad_attempt.status.status_code is StatusCode.ERROR
    assert any(e.name == "exception" for e in bad_attempt.events)
    assert attempts[str(untraced.id)].context.trace_id != trace_id
    # the handler's own spans nest under the attempt's
    assert inner.count(trace_id) == 121


def test_without_instrumentation_no_trace_context_is_stored(service: PostgresService) -> None:
    job = service.add_job(jobqueue.new_job("t", "o", None))
    assert service.get_trace_context(job.id) is None
