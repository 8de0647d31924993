-- Revision jobqueue_0004: queues, job meta and timeout, queue rules and the rate window.
-- Every new column is nullable or defaulted, so go-jobqueue keeps working (its jobs land in
-- the 'default' queue). Adding a column with a constant default rewrites no rows.

alter table worker.job
    add column queue text not null default 'default' check (length(queue) between 1 and 100),
    add column meta jsonb check (jsonb_typeof(meta) = 'object'),
    add column timeout interval check (timeout > interval '0'),
    add column concurrency_key text check (length(concurrency_key) between 1 and 200);

-- Claims now pick from one queue: the index leads with it.
create index job_queue_available_idx
    on worker.job (queue, priority desc, created_at, id)
    where started_at is null and stopped_at is null;
drop index worker.job_available_idx;

create table worker.queue (
    name                text primary key check (length(name) between 1 and 100),
    concurrency         integer check (concurrency > 0),
    per_key_concurrency integer check (per_key_concurrency > 0),
    rate_limit_count    integer check (rate_limit_count > 0),
    rate_limit_per      interval check (rate_limit_per > interval '0'),
    paused              boolean not null default false,
    updated_at          timestamptz not null default now(),
    check ((rate_limit_count is null) = (rate_limit_per is null))
);

create table worker.queue_start (
    queue      text not null,
    started_at timestamptz not null,
    count      integer not null check (count > 0)
);
create index queue_start_idx on worker.queue_start (queue, started_at);
