-- pg-jobqueue: the `worker` schema, compatible with go-jobqueue.
--
-- This file is the source of truth for a new database: install_schema runs it there.
-- The migrations build the same schema step by step: revision jobqueue_0001 runs a
-- frozen copy of this file as of pg-jobqueue 0.1.0, each later revision one delta
-- (migrations/versions/sql/); install_schema runs those deltas on an older database.
-- tests/test_migrations.py proves that this file and the chain build identical catalogs.
-- Works on PostgreSQL 13 and newer (gen_random_uuid() is built in from 13).
--
-- Additions to go-jobqueue's columns are all nullable or defaulted, and bundles are
-- counted where go-jobqueue counts them (in the statements that stop, reset, cancel or
-- delete a job, never in a trigger), so a go-jobqueue process can share the tables:
-- docs/interop.md says what is proven and how.

create schema if not exists worker;

create table if not exists worker.job_bundle (
    id               uuid primary key,
    type             text not null check (length(type) between 1 and 100),
    origin           text not null check (length(origin) between 1 and 100),
    num_jobs         integer not null check (num_jobs >= 0),
    num_jobs_stopped integer not null default 0 check (num_jobs_stopped between 0 and num_jobs),
    updated_at       timestamptz not null default now(),
    created_at       timestamptz not null default now()
);

create table if not exists worker.job (
    id                  uuid primary key,
    bundle_id           uuid references worker.job_bundle (id) on delete cascade,
    type                text not null check (length(type) between 1 and 100),
    payload             jsonb not null,
    priority            bigint not null default 0,
    origin              text not null check (length(origin) between 1 and 100),
    max_retry_count     integer not null default 0 check (max_retry_count >= 0),
    current_retry_count integer not null default 0
                        check (current_retry_count between 0 and max_retry_count),
    start_at            timestamptz,
    started_at          timestamptz,
    worker_alive_at     timestamptz,
    stopped_at          timestamptz,
    error_msg           text,
    error_data          jsonb,
    result              jsonb,
    updated_at          timestamptz not null default now(),
    created_at          timestamptz not null default now(),
    -- pg-jobqueue additions --------------------------------------------------
    -- Attempts claimed so far: counted at claim, so a job that kills its worker still ends.
    attempt             integer not null default 0 check (attempt >= 0),
    -- Fresh at every claim; outcome and heartbeat writes apply only while it is unchanged.
    claim_token         uuid,
    -- History of failed attempts: [{"attempt", "at", "message", "type"}, ...].
    errors              jsonb not null default '[]',
    cancelled_at        timestamptz
);

-- The reaper's index: running jobs by heartbeat.
create index if not exists job_running_idx
    on worker.job (worker_alive_at)
    where started_at is not null and stopped_at is null;
-- When the next scheduled job is due, for idle workers to sleep exactly that long.
create index if not exists job_scheduled_idx
    on worker.job (start_at)
    where started_at is null and stopped_at is null and start_at is not null;
create index if not exists job_bundle_id_idx on worker.job (bundle_id) where bundle_id is not null;
create index if not exists job_stopped_at_idx on worker.job (stopped_at) where stopped_at is not null;

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

-- Queues and limits (revision jobqueue_0004) ----------------------------------------------
-- Added after the columns of 0003, as the migrations do, so both build the same column
-- order; only when missing, so that a re-run on a current database takes no lock on the table.
-- queue: where a worker takes the job from (go-jobqueue's inserts land in 'default');
-- meta: custom metadata for hooks (a JSON object); timeout: overrides the type's;
-- concurrency_key: the key of the queue's per-key concurrency limit (e.g. a customer id).
do $$
begin
    if not exists (select from pg_attribute
                   where attrelid = 'worker.job'::regclass and attname = 'queue' and not attisdropped) then
        alter table worker.job
            add column queue text not null default 'default' check (length(queue) between 1 and 100),
            add column meta jsonb check (jsonb_typeof(meta) = 'object'),
            add column timeout interval check (timeout > interval '0'),
            add column concurrency_key text check (length(concurrency_key) between 1 and 200);
        drop index if exists worker.job_available_idx;  -- replaced by job_queue_available_idx
    end if;
end
$$;

-- The claim query's index: only jobs waiting to run, per queue, in the order they are taken.
create index if not exists job_queue_available_idx
    on worker.job (queue, priority desc, created_at, id)
    where started_at is null and stopped_at is null;

-- Queues with rules (jobqueue.configure_queue): limits that every worker process applies
-- when it claims, under a lock on the queue's row. A queue without a row has no rules.
create table if not exists worker.queue (
    name                text primary key check (length(name) between 1 and 100),
    concurrency         integer check (concurrency > 0),          -- running jobs at most
    per_key_concurrency integer check (per_key_concurrency > 0),  -- running jobs per concurrency_key
    rate_limit_count    integer check (rate_limit_count > 0),     -- starts at most per rate_limit_per
    rate_limit_per      interval check (rate_limit_per > interval '0'),
    paused              boolean not null default false,           -- no claims while true
    updated_at          timestamptz not null default now(),
    check ((rate_limit_count is null) = (rate_limit_per is null))
);

-- Starts of jobs in rate-limited queues (one row per claim, count jobs started at once), for
-- the sliding window; claims delete rows that have left the window.
create table if not exists worker.queue_start (
    queue      text not null,
    started_at timestamptz not null,
    count      integer not null check (count > 0)
);
create index if not exists queue_start_idx on worker.queue_start (queue, started_at);

-- Bundle types that have a durable completion handler (jobworker.register_bundle_handler):
-- when such a bundle stops, the same transaction enqueues its completion job.
-- Each worker that registers a handler refreshes its row when its pool starts (last_seen_at);
-- `jobqueue bundle-handlers` lists them and removes the ones no worker serves any more.
create table if not exists worker.bundle_handler (
    bundle_type     text primary key check (length(bundle_type) between 1 and 84),
    registered_at   timestamptz not null default now(),
    -- The completion job's max_retry_count, from the handler's registration.
    max_retry_count integer not null default 3 check (max_retry_count >= 0),
    last_seen_at    timestamptz not null default now()
);

-- Dashboard and tracing (revision jobqueue_0005) -----------------------------------------
-- W3C trace context of the span that enqueued the job ({"traceparent": ..., "tracestate": ...}),
-- so each attempt's span links back to the request that added it. Null without tracing.
alter table worker.job add column if not exists trace_context jsonb;

-- The durable completion job of a bundle, found by the bundle's id (the dashboard's bundle page).
create index if not exists job_bundle_completion_idx
    on worker.job ((payload ->> 'bundle_id'))
    where type like 'jobqueue.bundle:%';
-- Failed and cancelled jobs (few, next to a million succeeded ones): the dashboard counts them
-- by type with an index-only scan and lists them newest first, without touching the table.
create index if not exists job_failed_idx
    on worker.job (id) include (type, cancelled_at)
    where stopped_at is not null and error_msg is not null;

-- Live worker processes, each refreshing its heartbeat_at; a row whose heartbeat is older than
-- a few intervals belongs to a process that died. go-jobqueue processes do not register.
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

-- A time-ordered id (UUID version 7, like jobqueue.new_id) for jobs made in SQL: 48 bits
-- of Unix milliseconds over a random UUID, version bits turned from 4 to 7.
create or replace function worker.new_job_id() returns uuid
language sql volatile parallel safe as $$
    select encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
                                          placing substring(int8send(floor(extract(epoch from clock_timestamp())
                                                                           * 1000)::bigint) from 3)
                                          from 1 for 6),
                                  52, 1), 53, 1), 'hex')::uuid
$$;

-- Notifications -----------------------------------------------------------------
-- Payloads are go-jobqueue's: {"id", "type", "origin"} (+ "willRetry" on job_stopped).
-- pg_notify delivers on commit only, so a rolled back change never notifies.
--
-- Inserts use a statement-level trigger: a 10,000-row insert sends one
-- job_available notification per job type, not one per row. Updates use row-level
-- triggers whose WHEN clause is checked without calling any function, so the hot
-- writes (claims, heartbeats) pay nothing for them.
--
-- Bundle counters are not kept here: the statements that stop, reset, cancel or delete
-- a job move them (jobworker_pg/queries.sql), as go-jobqueue's own statements do, so
-- that a job stopped by either library is counted exactly once.

create or replace function worker.notify_job_available_inserted() returns trigger
language plpgsql as $$
begin
    -- Also for jobs scheduled for later: idle pg-jobqueue workers then set their timer.
    perform pg_notify('job_available',
                      json_build_object('id', j.id, 'type', j.type, 'origin', j.origin)::text)
    from (select distinct on (type) id, type, origin
          from new_jobs
          where started_at is null and stopped_at is null
          order by type, priority desc, created_at, id) as j;
    return null;
end
$$;

create or replace function worker.on_job_changed_state() returns trigger
language plpgsql as $$
begin
    if new.started_at is null and new.stopped_at is null
       and (new.start_at is null or new.start_at <= now()) then
        -- Available again and due: a reset or a reaped job, or a retry with no delay.
        -- A retry scheduled for later wakes nobody now: the worker that scheduled it
        -- sets its timer, the others find it at their next claim.
        perform pg_notify('job_available',
                          json_build_object('id', new.id, 'type', new.type, 'origin', new.origin)::text);
    end if;
    if (old.stopped_at is null and new.stopped_at is not null)
       or (old.started_at is not null and new.started_at is null and new.stopped_at is null
           and new.current_retry_count > old.current_retry_count) then
        -- The end of an attempt: stopped for good, or scheduled for a retry.
        perform pg_notify('job_stopped',
                          json_build_object('id', new.id, 'type', new.type, 'origin', new.origin,
                                            'willRetry', new.stopped_at is null)::text);
    end if;
    return null;
end
$$;

-- Attempts and error history for writers that keep neither (go-jobqueue's claim,
-- SetJobError and ScheduleRetry): pg-jobqueue's own statements count the attempt and
-- append the error themselves, so this trigger's WHEN clause never matches them.
create or replace function worker.on_job_attempt_unrecorded() returns trigger
language plpgsql as $$
begin
    if old.started_at is null then
        -- A claim that did not count its attempt: go-jobqueue numbers attempts with
        -- current_retry_count (the retries already made), so this is attempt crc + 1.
        new.attempt := greatest(old.attempt, old.current_retry_count) + 1;
    else
        -- An attempt that failed without its error in the history.
        new.errors := old.errors || jsonb_build_array(jsonb_build_object(
            'attempt', old.attempt, 'at', now(),
            'message', coalesce(new.error_msg, 'failed on a go-jobqueue worker (its error is not kept '
                                               'when it schedules a retry)'),
            'type', null));
    end if;
    return new;
end
$$;

create or replace function worker.on_job_bundle_stopped() returns trigger
language plpgsql as $$
begin
    -- The durable completion job, for bundle types that have a handler. Its payload holds
    -- the bundle as it stopped, jobs included, so the handler needs no bundle row (a
    -- go-jobqueue listener may delete a stopped bundle at once).
    insert into worker.job (id, type, payload, priority, origin, max_retry_count)
    select worker.new_job_id(), 'jobqueue.bundle:' || new.type,
           jsonb_build_object('bundle_id', new.id, 'bundle_type', new.type,
                              'bundle', to_jsonb(new) || jsonb_build_object('jobs', coalesce(
                                  (select jsonb_agg(to_jsonb(j) order by j.created_at, j.id)
                                   from worker.job j where j.bundle_id = new.id), '[]'))),
           0, new.origin, h.max_retry_count
    from worker.bundle_handler h
    where h.bundle_type = new.type;

    perform pg_notify('job_bundle_stopped',
                      json_build_object('id', new.id, 'type', new.type, 'origin', new.origin)::text);
    return null;
end
$$;

-- "create or replace trigger" needs PostgreSQL 14; create each trigger only when missing
-- so that re-running this file takes no lock on the tables.
do $$
begin
    if not exists (select from pg_trigger
                   where tgname = 'job_inserted' and tgrelid = 'worker.job'::regclass) then
        create trigger job_inserted
            after insert on worker.job
            referencing new table as new_jobs
            for each statement execute function worker.notify_job_available_inserted();
    end if;
    if not exists (select from pg_trigger
                   where tgname = 'job_changed_state' and tgrelid = 'worker.job'::regclass) then
        create trigger job_changed_state
            after update on worker.job
            for each row
            when ((old.stopped_at is null) <> (new.stopped_at is null)
                  or (new.started_at is null and new.stopped_at is null
                      and (old.started_at is not null or old.stopped_at is not null)))
            execute function worker.on_job_changed_state();
    end if;
    if not exists (select from pg_trigger
                   where tgname = 'job_attempt_unrecorded' and tgrelid = 'worker.job'::regclass) then
        create trigger job_attempt_unrecorded
            before update on worker.job
            for each row
            when ((old.started_at is null and new.started_at is not null and new.stopped_at is null
                   and new.attempt = old.attempt)
                  or (old.started_at is not null and old.stopped_at is null
                      and ((new.stopped_at is not null and new.error_msg is not null
                            and new.cancelled_at is null)
                           or (new.started_at is null and new.stopped_at is null
                               and new.current_retry_count > old.current_retry_count))
                      and new.errors = old.errors))
            execute function worker.on_job_attempt_unrecorded();
    end if;
    if not exists (select from pg_trigger
                   where tgname = 'job_bundle_stopped' and tgrelid = 'worker.job_bundle'::regclass) then
        create trigger job_bundle_stopped
            after update on worker.job_bundle
            for each row
            when (old.num_jobs_stopped < old.num_jobs and new.num_jobs_stopped = new.num_jobs)
            execute function worker.on_job_bundle_stopped();
    end if;
end
$$;
