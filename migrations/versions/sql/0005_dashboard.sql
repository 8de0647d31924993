-- Revision jobqueue_0005: the dashboard's worker-process registry, the trace context of a job,
-- and the index that finds a bundle's completion job. Additive only: nullable column, new
-- table, new index; go-jobqueue keeps working.

alter table worker.job add column if not exists trace_context jsonb;

create index if not exists job_bundle_completion_idx
    on worker.job ((payload ->> 'bundle_id'))
    where type like 'jobqueue.bundle:%';
-- Failed and cancelled jobs (few, next to a million succeeded ones): the dashboard counts them
-- by type with an index-only scan and lists them newest first, without touching the table.
create index if not exists job_failed_idx
    on worker.job (id) include (type, cancelled_at)
    where stopped_at is not null and error_msg is not null;

create table if not exists worker.worker_process (
    id           uuid primary key,
    host         text not null,
    pid          integer not null,
    threads      integer not null check (threads >= 0),
    busy         integer not null default 0 check (busy >= 0),
    job_types    text[] not null default '{}',
    started_at   timestamptz not null default now(),
    heartbeat_at timestamptz not null default now()
);
