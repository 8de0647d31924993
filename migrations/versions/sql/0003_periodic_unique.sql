-- jobqueue_0003: unique jobs (worker.job.unique_key and its partial unique index) and
-- periodic jobs (worker.job.scheduled_for, worker.schedule). Same statements as schema/worker.sql.

-- Periodic and unique jobs (revision jobqueue_0003) ------------------------------
-- Added with alter table, as the migration does, so both build the same column order.
-- unique_key: at most one unfinished job per key (job_unique_key_idx); null for most jobs,
-- and for every job a go-jobqueue process inserts, which the partial index then ignores.
alter table worker.job add column if not exists unique_key text;
-- The tick a periodic job was enqueued for (null for other jobs).
alter table worker.job add column if not exists scheduled_for timestamptz;

-- Enforces unique jobs: a second unfinished job with the same key cannot exist; inserts
-- use "on conflict do nothing" on it, so a duplicate is never a unique-violation error.
create unique index if not exists job_unique_key_idx
    on worker.job (unique_key)
    where unique_key is not null and stopped_at is null;
-- unique_for looks up the recent jobs of a key, finished or not.
create index if not exists job_unique_key_created_idx
    on worker.job (unique_key, created_at)
    where unique_key is not null;

-- Periodic schedules, declared by the workers that run them (jobworker.periodic). A tick
-- is enqueued by the transaction that moves last_tick forward, so however many workers
-- run a schedule, each tick is enqueued once.
create table if not exists worker.schedule (
    name            text primary key check (length(name) between 1 and 100),
    schedule        text not null,
    timezone        text not null default 'UTC',
    job_type        text not null check (length(job_type) between 1 and 100),
    payload         jsonb not null default 'null',
    priority        bigint not null default 0,
    max_retry_count integer not null default 0 check (max_retry_count >= 0),
    catch_up        text not null default 'latest' check (catch_up in ('latest', 'all', 'none')),
    -- Persisted and cluster-wide: disable_periodic / enable_periodic change it; a worker's
    -- declaration never does (its enabled= applies only when the row is first created).
    enabled         boolean not null default true,
    -- The latest tick enqueued (or skipped by catch_up='none'); ticks after it are due.
    last_tick       timestamptz,
    -- When the schedule was first declared: its first tick is the first one after this.
    created_at      timestamptz not null default now(),
    -- When a worker last declared it; long ago means its code is gone (orphaned).
    seen_at         timestamptz not null default now(),
    updated_at      timestamptz not null default now()
);
