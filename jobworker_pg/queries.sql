-- Every SQL statement of pg-jobqueue, as named blocks: "-- name: why".
-- Values are always bound parameters. The job columns, in the order of
-- jobworker_pg._rows.JOB_COLUMNS, are spelled out where a statement returns jobs.

-- insert_job: store one job; the database clock sets created_at and updated_at
insert into worker.job (id, bundle_id, type, payload, priority, origin, max_retry_count, start_at,
                        queue, meta, timeout, concurrency_key, trace_context)
values (%(id)s, %(bundle_id)s, %(type)s, %(payload)s::jsonb, %(priority)s, %(origin)s,
        %(max_retry_count)s, %(start_at)s, %(queue)s, %(meta)s::jsonb, %(timeout)s,
        %(concurrency_key)s, %(trace_context)s::jsonb)
returning created_at, updated_at

-- insert_jobs: store many jobs in one statement (arrays unnested in order), one wake-up per type
with ins as (
    insert into worker.job (id, bundle_id, type, payload, priority, origin, max_retry_count, start_at,
                            queue, meta, timeout, concurrency_key, trace_context)
    select id, bundle_id, type, payload::jsonb, priority, origin, max_retry_count, start_at,
           queue, meta::jsonb, timeout, concurrency_key,
           %(trace_context)s::jsonb  -- one enqueue span for the whole statement
    -- binary parameters: psycopg dumps text-format arrays with a quoting scan per element
    from unnest(%(ids)b::uuid[], %(bundle_ids)b::uuid[], %(types)b::text[], %(payloads)b::text[],
                %(priorities)b::bigint[], %(origins)b::text[], %(max_retry_counts)b::integer[],
                %(start_ats)b::timestamptz[], %(queues)b::text[], %(metas)b::text[],
                %(timeouts)b::interval[], %(concurrency_keys)b::text[])
         as t(id, bundle_id, type, payload, priority, origin, max_retry_count, start_at,
              queue, meta, timeout, concurrency_key)
    returning 1
)
select now(), (select count(*) from ins)

-- insert_bundle: store the bundle row before its jobs
insert into worker.job_bundle (id, type, origin, num_jobs)
values (%(id)s, %(type)s, %(origin)s, %(num_jobs)s)
returning created_at, updated_at

-- copy_jobs: store many jobs with one binary COPY (constraints and the statement-level insert trigger apply as for insert_jobs)
copy worker.job (id, bundle_id, type, payload, priority, origin, max_retry_count, start_at, queue, meta, timeout, concurrency_key) from stdin (format binary)

-- set_trace_context: the enqueue span's trace context on jobs stored by COPY (only while tracing)
with traced as (
    update worker.job set trace_context = %(trace_context)s::jsonb where id = any(%(ids)s::uuid[]) returning 1
)
select count(*) from traced

-- get_trace_context: the trace context stored with a job, for the span of its attempt
select trace_context from worker.job where id = %(id)s

-- transaction_now: the database clock of the open transaction, which is created_at and updated_at of the rows it inserts
select now()

-- get_job: one job by id
select id, bundle_id, type, payload, priority, origin, max_retry_count, current_retry_count,
       start_at, started_at, worker_alive_at, stopped_at, error_msg, error_data, result,
       updated_at, created_at, attempt, errors, cancelled_at, claim_token, unique_key, scheduled_for,
       queue, meta, timeout, concurrency_key
from worker.job where id = %(id)s

-- get_jobs: several jobs by id, for the listener's backlog of stop events (one read for many)
select id, bundle_id, type, payload, priority, origin, max_retry_count, current_retry_count,
       start_at, started_at, worker_alive_at, stopped_at, error_msg, error_data, result,
       updated_at, created_at, attempt, errors, cancelled_at, claim_token, unique_key, scheduled_for,
       queue, meta, timeout, concurrency_key
from worker.job where id = any(%(ids)s::uuid[])

-- get_bundle: one bundle row by id and its jobs in the order they were added, in one statement (one snapshot, one round trip): bundle columns, then job columns (null when it has none)
select b.id, b.type, b.origin, b.num_jobs, b.num_jobs_stopped, b.updated_at, b.created_at,
       j.id, j.bundle_id, j.type, j.payload, j.priority, j.origin, j.max_retry_count,
       j.current_retry_count, j.start_at, j.started_at, j.worker_alive_at, j.stopped_at,
       j.error_msg, j.error_data, j.result, j.updated_at, j.created_at, j.attempt, j.errors,
       j.cancelled_at, j.claim_token, j.unique_key, j.scheduled_for,
       j.queue, j.meta, j.timeout, j.concurrency_key
from worker.job_bundle b
left join worker.job j on j.bundle_id = b.id
where b.id = %(id)s
order by j.created_at, j.id

-- delete_job: delete one job; its bundle counts it stopped if it was not, so the bundle can still complete (go-jobqueue's DeleteJob does not count it)
with deleted as (
    delete from worker.job where id = %(id)s returning id, bundle_id, stopped_at
), counted as (
    update worker.job_bundle b
    set num_jobs_stopped = b.num_jobs_stopped + 1, updated_at = now()
    from deleted d
    where b.id = d.bundle_id and d.stopped_at is null
)
select id from deleted

-- delete_bundle: delete a bundle; its jobs go with it (on delete cascade)
delete from worker.job_bundle where id = %(id)s returning id

-- reset_jobs: make jobs run again from scratch; clearing claim_token voids a running attempt; each stopped job leaves its bundle's count (as go-jobqueue's ResetJobs)
with bundles as (
    -- Bundles first, in id order, as save_outcomes locks them: no deadlock between the two.
    select b.id from worker.job_bundle b
    where b.id in (select bundle_id from worker.job where id = any(%(ids)s::uuid[]))
    order by b.id
    for update of b
), jobs as (
    -- Locked, so a job that stops while we wait is seen stopped (and counted down).
    select j.id, j.bundle_id, j.stopped_at from worker.job j
    where j.id = any(%(ids)s::uuid[]) and (select count(*) from bundles) >= 0
    for update of j
), counted as (
    update worker.job_bundle b
    set num_jobs_stopped = b.num_jobs_stopped - c.n, updated_at = now()
    from (select bundle_id, count(*) as n from jobs
          where bundle_id is not null and stopped_at is not null group by bundle_id) c
    where b.id = c.bundle_id
)
update worker.job j
set start_at = null, started_at = null, worker_alive_at = null, stopped_at = null,
    error_msg = null, error_data = null, result = null, current_retry_count = 0,
    attempt = 0, claim_token = null, cancelled_at = null, updated_at = now()
from jobs
where j.id = jobs.id
returning j.id, j.bundle_id, j.type, j.payload, j.priority, j.origin, j.max_retry_count,
          j.current_retry_count, j.start_at, j.started_at, j.worker_alive_at, j.stopped_at,
          j.error_msg, j.error_data, j.result, j.updated_at, j.created_at, j.attempt, j.errors,
          j.cancelled_at, j.claim_token, j.unique_key, j.scheduled_for,
          j.queue, j.meta, j.timeout, j.concurrency_key

-- cancel_job: stop a job that is not running; it never runs (started_at set: go-jobqueue's claim looks at nothing else), keeps no retries (its startup reaper resets failed jobs with retries left) and counts as stopped in its bundle
with cancelled as (
    update worker.job
    set started_at = now(), stopped_at = now(), cancelled_at = now(), error_msg = 'job cancelled',
        current_retry_count = max_retry_count, updated_at = now()
    where id = %(id)s and started_at is null and stopped_at is null
    returning id, bundle_id, type, payload, priority, origin, max_retry_count, current_retry_count,
              start_at, started_at, worker_alive_at, stopped_at, error_msg, error_data, result,
              updated_at, created_at, attempt, errors, cancelled_at, claim_token, unique_key, scheduled_for,
              queue, meta, timeout, concurrency_key
), counted as (
    update worker.job_bundle b
    set num_jobs_stopped = b.num_jobs_stopped + 1, updated_at = now()
    from cancelled c
    where b.id = c.bundle_id
)
select id, bundle_id, type, payload, priority, origin, max_retry_count, current_retry_count,
       start_at, started_at, worker_alive_at, stopped_at, error_msg, error_data, result,
       updated_at, created_at, attempt, errors, cancelled_at, claim_token, unique_key, scheduled_for,
       queue, meta, timeout, concurrency_key
from cancelled

-- status_unfinished: exact counts per type of jobs not stopped, from the partial indexes of waiting and running jobs only (cost grows with the unfinished jobs, not with history)
select type,
       count(*) filter (where started_at is null and error_msg is null and current_retry_count = 0
                          and (start_at is null or start_at <= now())) as pending,
       count(*) filter (where started_at is null and error_msg is null and current_retry_count = 0
                          and start_at > now()) as scheduled,
       count(*) filter (where started_at is not null) as running,
       count(*) filter (where started_at is null
                          and (error_msg is not null or current_retry_count > 0)) as retrying
from worker.job
-- Each arm is the predicate of one partial index (job_queue_available_idx, job_running_idx): a BitmapOr.
where (started_at is null and stopped_at is null) or (started_at is not null and stopped_at is null)
group by type

-- status_finished: exact counts per type of stopped jobs (used while the table is small)
select type,
       count(*) filter (where error_msg is null) as succeeded,
       count(*) filter (where error_msg is not null and cancelled_at is null) as failed,
       count(*) filter (where cancelled_at is not null) as cancelled
from worker.job
where stopped_at is not null
group by type

-- status_finished_sampled: counts per type of stopped jobs in a block sample of the table, scaled up (estimates for big tables)
select type,
       (count(*) filter (where error_msg is null) * 100 / %(percent)s::float8)::bigint as succeeded,
       (count(*) filter (where error_msg is not null and cancelled_at is null)
            * 100 / %(percent)s::float8)::bigint as failed,
       (count(*) filter (where cancelled_at is not null) * 100 / %(percent)s::float8)::bigint as cancelled
from worker.job tablesample system (%(percent)s)
where stopped_at is not null
group by type

-- job_rows_estimate: the planner's row count of worker.job (-1 before the first vacuum or analyze)
select reltuples::float8 from pg_class where oid = 'worker.job'::regclass

-- status_bundles: bundle counts, all and stopped
select count(*), count(*) filter (where num_jobs_stopped >= num_jobs) from worker.job_bundle

-- jobs_to_do: every job not stopped, in claim order
select id, bundle_id, type, payload, priority, origin, max_retry_count, current_retry_count,
       start_at, started_at, worker_alive_at, stopped_at, error_msg, error_data, result,
       updated_at, created_at, attempt, errors, cancelled_at, claim_token, unique_key, scheduled_for,
       queue, meta, timeout, concurrency_key
from worker.job where stopped_at is null
order by priority desc, created_at, id

-- jobs_started_before: running jobs started before a time
select id, bundle_id, type, payload, priority, origin, max_retry_count, current_retry_count,
       start_at, started_at, worker_alive_at, stopped_at, error_msg, error_data, result,
       updated_at, created_at, attempt, errors, cancelled_at, claim_token, unique_key, scheduled_for,
       queue, meta, timeout, concurrency_key
from worker.job where started_at < %(since)s and stopped_at is null
order by started_at, id

-- jobs_with_errors: jobs whose last attempt failed (stopped or retrying), cancelled ones aside
select id, bundle_id, type, payload, priority, origin, max_retry_count, current_retry_count,
       start_at, started_at, worker_alive_at, stopped_at, error_msg, error_data, result,
       updated_at, created_at, attempt, errors, cancelled_at, claim_token, unique_key, scheduled_for,
       queue, meta, timeout, concurrency_key
from worker.job where error_msg is not null and cancelled_at is null
order by updated_at, id

-- delete_finished_jobs: delete succeeded jobs outside bundles (failed ones stay for inspection)
delete from worker.job
where stopped_at is not null and error_msg is null and bundle_id is null
  and (%(older_than)s::float8 is null
       or stopped_at < now() - make_interval(secs => %(older_than)s::float8))

-- delete_finished_bundles: delete bundles whose jobs all succeeded and whose durable completion handler (if any) has run; their jobs go with them (on delete cascade)
delete from worker.job_bundle b
where not exists (select from worker.job j
                  where j.bundle_id = b.id and (j.stopped_at is null or j.error_msg is not null))
  and not exists (select from worker.job h
                  where h.stopped_at is null and h.type like 'jobqueue.bundle:%%'
                    and h.payload->>'bundle_id' = b.id::text)
  and (%(older_than)s::float8 is null
       or b.updated_at < now() - make_interval(secs => %(older_than)s::float8))

-- claim_jobs: take up to `limit` due jobs of one queue without rules for this worker, committing the claim before any runs; the token is new for every claim
with ruled as materialized (
    -- whether the queue has rules after all (limited or paused since this worker last looked):
    -- then nothing is claimed here, and one row of nulls tells the worker to use claim_queue_jobs
    select exists (select from worker.queue r
                   where r.name = %(queue)s
                     and (r.paused or r.concurrency is not null
                          or r.per_key_concurrency is not null or r.rate_limit_count is not null)) as yes
),
next as (
    select id
    from worker.job
    where queue = %(queue)s                                    -- one queue (job_queue_available_idx)
      and started_at is null and stopped_at is null            -- waiting
      and type = any(%(types)s::text[])                        -- only types this worker serves
      and (start_at is null or start_at <= now())              -- due by the database clock
      and not (select yes from ruled)                          -- a one-time filter
    order by priority desc, created_at, id                     -- highest priority, then oldest
    limit %(limit)s
    for update skip locked                                     -- never wait for another claimer
),
claimed as (
    update worker.job j
    set started_at = now(),
        worker_alive_at = now(),
        claim_token = %(token)s,                               -- this claim's; fences later writes
        attempt = j.attempt + 1,                               -- counted now: a crash still counts
        updated_at = now()
    from next
    where j.id = next.id
    -- only what a claim does not know already (_rows.claimed_job_from_row) (it set started_at =
    -- worker_alive_at = updated_at, claim_token is its own, stopped_at is null, queue is the one
    -- asked for): fewer values to decode per job
    returning j.id, j.bundle_id, j.type, j.payload, j.priority, j.origin, j.max_retry_count,
              j.current_retry_count, j.start_at, j.started_at, j.error_msg, j.error_data, j.result,
              j.created_at, j.attempt,
              nullif(j.errors, '[]') as errors,                -- most have none: nothing to decode
              j.cancelled_at, j.unique_key, j.scheduled_for, j.meta, j.timeout, j.concurrency_key
)
select * from claimed
union all
select null, null, null, null, null, null, null, null, null, null, null, null, null, null, null,
       null, null, null, null, null, null, null
from ruled where yes

-- lock_queue: the rules of a queue, its row locked until the claim commits: claims of a queue with rules take turns, and the next statement's snapshot sees every earlier claim
select concurrency, per_key_concurrency, rate_limit_count,
       extract(epoch from rate_limit_per)::float8, paused
from worker.queue
where name = %(queue)s
for update

-- claim_queue_jobs: claim_jobs for a queue with limits (run after lock_queue, in its transaction): no more than the queue's concurrency, per-key concurrency and rate window allow
with running as (
    -- the queue's claimed, unstopped jobs per key (job_running_idx: at most one per worker thread)
    select concurrency_key, count(*) as n
    from worker.job
    where started_at is not null and stopped_at is null and queue = %(queue)s
    group by concurrency_key
),
window_starts as (
    -- starts in the rate window. Starts are stamped with statement_timestamp(), not now() (the
    -- start of the transaction, before the lock wait): this statement begins after the previous
    -- lock holder committed, so stamps grow in lock order and each window holds every start
    select coalesce(sum(count), 0) as n
    from worker.queue_start
    where %(rate_count)s::integer is not null and queue = %(queue)s
      and started_at > statement_timestamp() - make_interval(secs => %(rate_per)s::float8)
),
pruned as (
    -- starts that left the window count for nothing any more (nor for any later claim)
    delete from worker.queue_start
    where %(rate_count)s::integer is not null and queue = %(queue)s
      and started_at <= statement_timestamp() - make_interval(secs => %(rate_per)s::float8)
),
candidates as (
    select j.id, j.concurrency_key, j.priority, j.created_at,
           coalesce(r.n, 0) as key_running
    from worker.job j
    left join running r on %(per_key)s::integer is not null and r.concurrency_key = j.concurrency_key
    where j.queue = %(queue)s
      and j.started_at is null and j.stopped_at is null
      and j.type = any(%(types)s::text[])
      and (j.start_at is null or j.start_at <= now())
      -- keys at their limit are passed over, not waited for
      and (%(per_key)s::integer is null or j.concurrency_key is null or coalesce(r.n, 0) < %(per_key)s)
    order by j.priority desc, j.created_at, j.id
    limit %(scan)s                                               -- enough to fill the claim despite keys
    for update of j skip locked
),
chosen as (
    select id
    from (select c.*, row_number() over (partition by c.concurrency_key
                                         order by c.priority desc, c.created_at, c.id) as key_rank
          from candidates c) ranked
    where %(per_key)s::integer is null or concurrency_key is null
       or key_running + key_rank <= %(per_key)s
    order by priority desc, created_at, id
    limit greatest(0, least(
        %(limit)s::integer,
        %(concurrency)s::integer - (select coalesce(sum(n), 0) from running),
        %(rate_count)s::integer - (select n from window_starts)))  -- least() ignores nulls
),
claimed as (
    update worker.job j
    set started_at = statement_timestamp(),                    -- the stamp of the rate window
        worker_alive_at = statement_timestamp(),
        claim_token = %(token)s,
        attempt = j.attempt + 1,
        updated_at = statement_timestamp()
    from chosen
    where j.id = chosen.id
    returning j.id, j.bundle_id, j.type, j.payload, j.priority, j.origin, j.max_retry_count,
              j.current_retry_count, j.start_at, j.started_at, j.error_msg, j.error_data, j.result,
              j.created_at, j.attempt, nullif(j.errors, '[]') as errors, j.cancelled_at,
              j.unique_key, j.scheduled_for, j.meta, j.timeout, j.concurrency_key
),
recorded as (
    -- this claim's starts, for the rate window of later claims
    insert into worker.queue_start (queue, started_at, count)
    select %(queue)s, statement_timestamp(), count(*) from claimed
    having count(*) > 0 and %(rate_count)s::integer is not null
)
select * from claimed

-- queue_hold: after a short claim_queue_jobs, in its transaction: seconds until claiming the queue again may take more, or null when no job of ours is due there (the claimer then waits for a wake-up)
with due as (
    select exists (select from worker.job
                   where queue = %(queue)s and started_at is null and stopped_at is null
                     and type = any(%(types)s::text[]) and (start_at is null or start_at <= now())) as yes
),
window_starts as (
    select coalesce(sum(count), 0) as n, min(started_at) as oldest
    from worker.queue_start
    where %(rate_count)s::integer is not null and queue = %(queue)s
      and started_at > statement_timestamp() - make_interval(secs => %(rate_per)s::float8)
)
select case
    when not (select yes from due) then null
    -- the rate window is full: until its oldest start leaves it
    when %(rate_count)s::integer is not null and w.n >= %(rate_count)s
        then greatest(0, extract(epoch from w.oldest + make_interval(secs => %(rate_per)s::float8)
                                            - statement_timestamp()))::float8
    -- at the concurrency or a key at its limit: places free up in other processes unannounced
    when %(per_key)s::integer is not null
         or (select count(*) from worker.job
             where started_at is not null and stopped_at is null and queue = %(queue)s)
            >= %(concurrency)s::integer
        then %(recheck)s::float8
    -- room again already (starts left the window since the claim): soon
    else %(soon)s::float8
end
from window_starts w

-- queue_rules: the queues that have rules, for the worker's choice between claim_jobs and claim_queue_jobs
select name from worker.queue
where paused or concurrency is not null or per_key_concurrency is not null or rate_limit_count is not null

-- configure_queue: create or change a queue's rules; a false set_* flag (and a null paused) keeps the current value
insert into worker.queue as r (name, concurrency, per_key_concurrency, rate_limit_count, rate_limit_per, paused)
values (%(name)s, %(concurrency)s, %(per_key)s, %(rate_count)s,
        make_interval(secs => %(rate_per)s::float8), coalesce(%(paused)s, false))
on conflict (name) do update
set concurrency = case when %(set_concurrency)s then excluded.concurrency else r.concurrency end,
    per_key_concurrency = case when %(set_per_key)s then excluded.per_key_concurrency
                               else r.per_key_concurrency end,
    rate_limit_count = case when %(set_rate)s then excluded.rate_limit_count else r.rate_limit_count end,
    rate_limit_per = case when %(set_rate)s then excluded.rate_limit_per else r.rate_limit_per end,
    paused = coalesce(%(paused)s, r.paused),
    updated_at = now()
returning name, concurrency, per_key_concurrency, rate_limit_count,
          extract(epoch from rate_limit_per)::float8, paused

-- list_queues: every queue with rules or unstopped jobs, with its rules and its waiting and running jobs
with counts as (
    select queue,
           count(*) filter (where started_at is null) as waiting,
           count(*) filter (where started_at is not null) as running
    from worker.job
    where stopped_at is null
    group by queue
)
select coalesce(r.name, c.queue), r.concurrency, r.per_key_concurrency, r.rate_limit_count,
       extract(epoch from r.rate_limit_per)::float8, coalesce(r.paused, false),
       coalesce(c.waiting, 0), coalesce(c.running, 0)
from worker.queue r
full join counts c on c.queue = r.name
order by 1

-- claimed_with_tokens: jobs a claim took whose reply was lost (the connection broke after the commit)
select id, bundle_id, type, payload, priority, origin, max_retry_count, current_retry_count,
       start_at, started_at, worker_alive_at, stopped_at, error_msg, error_data, result,
       updated_at, created_at, attempt, errors, cancelled_at, claim_token, unique_key, scheduled_for,
       queue, meta, timeout, concurrency_key
from worker.job
where claim_token = any(%(tokens)s::uuid[]) and started_at is not null and stopped_at is null

-- save_outcomes: end many attempts in one statement; only rows whose claim token is unchanged; stopped bundle jobs count in their bundle here (as go-jobqueue's SetJobResult/SetJobError)
with locked_bundles as (
    -- Stopping a bundle's job moves the bundle's counter. With lock_bundles (some outcome stops
    -- a bundle job) those bundles are locked first, in id order, so that concurrent writers
    -- cannot deadlock on the counters; without, this runs nothing (a one-time filter).
    select b.id
    from worker.job_bundle b
    where %(lock_bundles)s and b.id in (select bundle_id from worker.job where id = any(%(ids)b::uuid[]))
    order by b.id
    for update of b
), ended as (
update worker.job j
-- 'retry' and 'snooze' make the job available again after retry_delay; a snooze (jobworker.Snooze)
-- gives its attempt back and keeps the job's error, noting itself in the history only.
set stopped_at = case when o.kind in ('retry', 'snooze') then null else now() end,
    started_at = case when o.kind in ('retry', 'snooze') then null else j.started_at end,
    claim_token = case when o.kind in ('retry', 'snooze') then null else j.claim_token end,
    start_at = case when o.kind in ('retry', 'snooze') then now() + make_interval(secs => o.retry_delay)
                    else j.start_at end,
    -- A failure for good keeps no retries, as go-jobqueue's SetJobError leaves it.
    current_retry_count = case when o.kind = 'retry' then least(j.attempt, j.max_retry_count)
                               when o.kind = 'failed' then j.max_retry_count
                               else j.current_retry_count end,
    attempt = case when o.kind = 'snooze' then j.attempt - 1 else j.attempt end,
    result = o.result::jsonb,
    error_msg = case when o.kind = 'snooze' then j.error_msg else o.error_msg end,
    error_data = case when o.kind = 'snooze' then j.error_data else o.error_data::jsonb end,
    errors = case when o.kind = 'succeeded' then j.errors
                  else j.errors || jsonb_build_array(jsonb_build_object(
                      'attempt', j.attempt, 'at', now(), 'message', o.error_msg, 'type', o.error_type))
             end,
    updated_at = now()
-- binary parameters: psycopg dumps text-format arrays with a quoting scan per element
from unnest(%(ids)b::uuid[], %(tokens)b::uuid[], %(kinds)b::text[], %(results)b::text[],
            %(error_msgs)b::text[], %(error_types)b::text[], %(error_datas)b::text[],
            %(retry_delays)b::float8[])
     as o(id, token, kind, result, error_msg, error_type, error_data, retry_delay)
where j.id = o.id and j.claim_token = o.token
  -- The state check names o, so it stays a filter of the join: as a filter of the scan of
  -- worker.job, stale statistics made the planner expect one row there and compare every
  -- outcome with every running job, or walk job_running_idx (a dead entry per job ever run).
  and (j.stopped_at is null and j.started_at is not null or o.id is null)
  and (select count(*) from locked_bundles) >= 0  -- an init plan: the locks come before any change
returning j.id, j.bundle_id, j.stopped_at is not null as stopped
), counted as (
    update worker.job_bundle b
    set num_jobs_stopped = b.num_jobs_stopped + c.n, updated_at = now()
    from (select bundle_id, count(*) as n from ended
          where stopped and bundle_id is not null group by bundle_id) c
    where b.id = c.bundle_id
)
select id from ended

-- heartbeat: mark this process's claims alive in one statement (input sorted by id: fixed lock order)
update worker.job j
set worker_alive_at = now()
from unnest(%(ids)b::uuid[], %(tokens)b::uuid[]) as c(id, token)
where j.id = c.id and j.claim_token = c.token
  and (j.stopped_at is null or c.id is null)  -- a join filter: see save_outcomes
returning j.id

-- release_claims: give back claimed jobs that never started (a stopping pool's prefetched jobs): available again, the attempt uncounted
update worker.job j
set started_at = null,
    worker_alive_at = null,
    claim_token = null,
    attempt = j.attempt - 1,
    updated_at = now()
from unnest(%(ids)b::uuid[], %(tokens)b::uuid[]) as c(id, token)
where j.id = c.id and j.claim_token = c.token
  and (j.stopped_at is null and j.started_at is not null or c.id is null)  -- see save_outcomes
returning j.id

-- reap_dead_jobs: requeue (or fail, when no attempt is left) running jobs whose worker stopped its heartbeat
with dead as (
    select id
    from worker.job
    where started_at is not null and stopped_at is null
      and coalesce(worker_alive_at, started_at) < now() - make_interval(secs => %(dead_for)s::float8)
      -- after a server restart nobody could send heartbeats: give live workers dead_for to return
      and pg_postmaster_start_time() < now() - make_interval(secs => %(dead_for)s::float8)
    order by id
    for update skip locked
),
reaped as (
    update worker.job j
    set stopped_at = case when j.attempt > j.max_retry_count then now() end,
        started_at = case when j.attempt > j.max_retry_count then j.started_at end,
        claim_token = null,
        start_at = case when j.attempt > j.max_retry_count then j.start_at else null end,
        current_retry_count = case when j.attempt > j.max_retry_count then j.max_retry_count
                                   else least(j.attempt, j.max_retry_count) end,
        error_msg = 'worker lost: no heartbeat for ' || %(dead_for)s::float8 || ' s during attempt ' || j.attempt,
        error_data = jsonb_build_object('type', 'WorkerLost',
                                        'message', 'no heartbeat for ' || %(dead_for)s::float8 || ' s',
                                        'worker_alive_at', j.worker_alive_at),
        errors = j.errors || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempt, 'at', now(),
            'message', 'worker lost: no heartbeat for ' || %(dead_for)s::float8 || ' s',
            'type', 'WorkerLost')),
        updated_at = now()
    from dead
    where j.id = dead.id
    returning j.id, j.type, j.bundle_id, j.stopped_at is not null as failed
), counted as (
    -- A job failed for good counts in its bundle, as every stop does.
    update worker.job_bundle b
    set num_jobs_stopped = b.num_jobs_stopped + c.n, updated_at = now()
    from (select bundle_id, count(*) as n from reaped
          where failed and bundle_id is not null group by bundle_id) c
    where b.id = c.bundle_id
)
select id, type, failed from reaped

-- seconds_until_next_job: how long until the earliest scheduled job of these types is due
select extract(epoch from min(start_at) - now())::float8
from worker.job
where started_at is null and stopped_at is null and start_at > now()
  and type = any(%(types)s::text[])

-- declare_bundle_handlers: remember bundle types with a durable completion handler, the retries of their completion jobs, and that a worker serves them now
insert into worker.bundle_handler (bundle_type, max_retry_count)
select * from unnest(%(bundle_types)s::text[], %(max_retry_counts)s::integer[])
on conflict (bundle_type) do update
set max_retry_count = excluded.max_retry_count, last_seen_at = now()

-- list_bundle_handlers: the declared bundle handlers with their completion jobs not yet stopped, for `jobqueue bundle-handlers`
select h.bundle_type, h.max_retry_count, h.registered_at, h.last_seen_at,
       (select count(*) from worker.job j
        where j.type = 'jobqueue.bundle:' || h.bundle_type and j.stopped_at is null)
from worker.bundle_handler h
order by h.bundle_type

-- remove_bundle_handler: forget a bundle handler no worker serves any more: its bundles stop enqueuing completion jobs
delete from worker.bundle_handler where bundle_type = %(bundle_type)s returning bundle_type

-- open_transaction: a no-op statement that makes psycopg begin the caller's implicit transaction, so the savepoint after it joins that transaction
select 1

-- all_jobs: every job, oldest first (for test assertions that list what was enqueued)
select id, bundle_id, type, payload, priority, origin, max_retry_count, current_retry_count,
       start_at, started_at, worker_alive_at, stopped_at, error_msg, error_data, result,
       updated_at, created_at, attempt, errors, cancelled_at, claim_token, unique_key, scheduled_for,
       queue, meta, timeout, concurrency_key
from worker.job
order by created_at, id

-- make_jobs_due: testing: waiting jobs scheduled for later (or waiting for a retry) become due now
update worker.job
set start_at = now(), updated_at = now()
where started_at is null and stopped_at is null and start_at > now()
  and type = any(%(types)s::text[])

-- list_jobs: newest jobs first for `jobqueue jobs`, optionally only to-do or failed ones of some types
select id, bundle_id, type, payload, priority, origin, max_retry_count, current_retry_count,
       start_at, started_at, worker_alive_at, stopped_at, error_msg, error_data, result,
       updated_at, created_at, attempt, errors, cancelled_at, claim_token, unique_key, scheduled_for,
       queue, meta, timeout, concurrency_key
from worker.job
where (%(types)s::text[] is null or type = any(%(types)s::text[]))
  and (not %(todo)s or stopped_at is null)
  and (not %(errors)s or (error_msg is not null and cancelled_at is null))
order by created_at desc, id desc
limit %(limit)s

-- queue_depth: jobs of the types a worker serves due and waiting, and running, for its summary line (partial indexes only)
select count(*) filter (where started_at is null and (start_at is null or start_at <= now())),
       count(*) filter (where started_at is not null)
from worker.job
where stopped_at is null and type = any(%(types)s)

-- count_unstopped_of_origin: how many jobs of one origin have not stopped yet (the demo waits for 0)
select count(*) from worker.job where origin = %(origin)s and stopped_at is null

-- schema_installed: whether the worker schema exists in this database
select to_regclass('worker.job') is not null

-- insert_unique_jobs: store jobs unless an unfinished job with their unique_key exists (job_unique_key_idx) or, with unique_for, one created within that period; a conflict waits for the holder's transaction and is never an error; returns the ids stored
insert into worker.job (id, bundle_id, type, payload, priority, origin, max_retry_count, start_at,
                        unique_key, queue, meta, timeout, concurrency_key)
select t.id, t.bundle_id, t.type, t.payload::jsonb, t.priority, t.origin, t.max_retry_count, t.start_at,
       t.unique_key, t.queue, t.meta::jsonb, t.timeout, t.concurrency_key
from unnest(%(ids)b::uuid[], %(bundle_ids)b::uuid[], %(types)b::text[], %(payloads)b::text[],
            %(priorities)b::bigint[], %(origins)b::text[], %(max_retry_counts)b::integer[],
            %(start_ats)b::timestamptz[], %(unique_keys)b::text[], %(unique_fors)b::float8[],
            %(queues)b::text[], %(metas)b::text[], %(timeouts)b::interval[], %(concurrency_keys)b::text[])
     as t(id, bundle_id, type, payload, priority, origin, max_retry_count, start_at, unique_key, unique_for,
          queue, meta, timeout, concurrency_key)
where t.unique_for is null
   or not exists (select from worker.job r                     -- job_unique_key_created_idx
                  where r.unique_key = t.unique_key
                    and r.created_at > now() - make_interval(secs => t.unique_for))
on conflict (unique_key) where unique_key is not null and stopped_at is null do nothing
returning id, created_at

-- insert_unique_job: insert_unique_jobs for a single job, with scalar parameters (cheaper than arrays of one element)
insert into worker.job (id, bundle_id, type, payload, priority, origin, max_retry_count, start_at, unique_key,
                        queue, meta, timeout, concurrency_key)
select %(id)s, %(bundle_id)s, %(type)s, %(payload)s::jsonb, %(priority)s, %(origin)s, %(max_retry_count)s,
       %(start_at)s, %(unique_key)s, %(queue)s, %(meta)s::jsonb, %(timeout)s, %(concurrency_key)s
where %(unique_for)s::float8 is null
   or not exists (select from worker.job r
                  where r.unique_key = %(unique_key)s
                    and r.created_at > now() - make_interval(secs => %(unique_for)s::float8))
on conflict (unique_key) where unique_key is not null and stopped_at is null do nothing
returning id, created_at

-- unique_key_holders: for each key, the job that holds it: the unfinished one, else the newest created within its unique_for
select distinct on (j.unique_key)
       j.id, j.bundle_id, j.type, j.payload, j.priority, j.origin, j.max_retry_count, j.current_retry_count,
       j.start_at, j.started_at, j.worker_alive_at, j.stopped_at, j.error_msg, j.error_data, j.result,
       j.updated_at, j.created_at, j.attempt, j.errors, j.cancelled_at, j.claim_token, j.unique_key, j.scheduled_for,
       j.queue, j.meta, j.timeout, j.concurrency_key
from worker.job j
join unnest(%(keys)s::text[], %(unique_fors)s::float8[]) as k(unique_key, unique_for)
  on j.unique_key = k.unique_key
where j.stopped_at is null
   or (k.unique_for is not null and j.created_at > now() - make_interval(secs => k.unique_for))
order by j.unique_key, j.stopped_at is null desc, j.created_at desc

-- declare_schedules: store or refresh the schedules a worker runs (in name order: one lock order); a new one starts at the worker's now with its enabled, an existing one keeps enabled, last_tick and created_at
insert into worker.schedule (name, schedule, timezone, job_type, payload, priority, max_retry_count,
                             catch_up, enabled, created_at, seen_at, updated_at)
select t.name, t.schedule, t.timezone, t.job_type, t.payload::jsonb, t.priority, t.max_retry_count,
       t.catch_up, t.enabled, %(now)s, %(now)s, now()
from unnest(%(names)s::text[], %(schedules)s::text[], %(timezones)s::text[], %(job_types)s::text[],
            %(payloads)s::text[], %(priorities)s::bigint[], %(max_retry_counts)s::integer[],
            %(catch_ups)s::text[], %(enableds)s::boolean[])
     as t(name, schedule, timezone, job_type, payload, priority, max_retry_count, catch_up, enabled)
order by t.name
on conflict (name) do update
set schedule = excluded.schedule, timezone = excluded.timezone, job_type = excluded.job_type,
    payload = excluded.payload, priority = excluded.priority,
    max_retry_count = excluded.max_retry_count, catch_up = excluded.catch_up,
    seen_at = excluded.seen_at, updated_at = now()

-- schedule_states: enabled, last tick and creation time of the schedules a worker runs
select name, enabled, last_tick, created_at from worker.schedule where name = any(%(names)s::text[])

-- enqueue_ticks: in one statement, move a schedule's last tick from the value this worker read to the new one and enqueue the jobs of the ticks; disabled, or moved by another worker first (the update then re-reads the row it waited for), it writes nothing
with moved as (
    update worker.schedule
    set last_tick = %(last_tick)s, updated_at = now()
    where name = %(name)s and enabled and last_tick is not distinct from %(expected)s
    returning name
),
enqueued as (
    insert into worker.job (id, type, payload, priority, origin, max_retry_count, unique_key, scheduled_for)
    select t.id, %(job_type)s, %(payload)s::jsonb, %(priority)s, %(origin)s, %(max_retry_count)s,
           t.unique_key, t.tick
    from unnest(%(ids)s::uuid[], %(unique_keys)s::text[], %(ticks)s::timestamptz[]) as t(id, unique_key, tick)
    where exists (select from moved)
    on conflict (unique_key) where unique_key is not null and stopped_at is null do nothing
    returning id
)
select (select count(*) from moved), array(select id from enqueued)

-- list_schedules: the schedules (all, or the one named), with the database clock for their next runs and whether any worker declared them lately
select name, schedule, timezone, job_type, payload, priority, max_retry_count, catch_up, enabled,
       last_tick, created_at, seen_at, now(),
       seen_at < now() - make_interval(secs => %(orphaned_after)s::float8)
from worker.schedule
where %(name)s::text is null or name = %(name)s
order by name

-- set_schedule_enabled: enable or disable a schedule for every worker; enabling skips the ticks of the disabled time (last_tick moves to now)
update worker.schedule
set last_tick = case when not enabled and %(enabled)s
                     then greatest(coalesce(last_tick, created_at), now()) else last_tick end,
    enabled = %(enabled)s, updated_at = now()
where name = %(name)s
returning name

-- run_schedule_now: enqueue one job of a schedule at once, for now as its tick; the schedule's own ticks are unaffected
insert into worker.job (id, type, payload, priority, origin, max_retry_count, scheduled_for)
select %(id)s, job_type, payload, priority, %(origin)s, max_retry_count, now()
from worker.schedule
where name = %(name)s
returning id, bundle_id, type, payload, priority, origin, max_retry_count, current_retry_count,
          start_at, started_at, worker_alive_at, stopped_at, error_msg, error_data, result,
          updated_at, created_at, attempt, errors, cancelled_at, claim_token, unique_key, scheduled_for,
          queue, meta, timeout, concurrency_key

-- delete_schedule: forget a schedule (an orphaned one; a worker that still runs it declares it again)
delete from worker.schedule where name = %(name)s returning name

-- register_worker_process: a worker process announces itself to the dashboard's registry (worker.worker_process)
insert into worker.worker_process (id, host, pid, threads, job_types)
values (%(id)s, %(host)s, %(pid)s, %(threads)s, %(job_types)s)
on conflict (id) do update set threads = excluded.threads, job_types = excluded.job_types, heartbeat_at = now()

-- worker_process_heartbeat: a registered process is alive, with this many busy threads; rows dead for a day are dropped
with beat as (
    update worker.worker_process set heartbeat_at = now(), busy = %(busy)s where id = %(id)s returning id
)
delete from worker.worker_process where heartbeat_at < now() - interval '1 day' and id <> %(id)s

-- unregister_worker_process: a worker process stops
delete from worker.worker_process where id = %(id)s

-- worker_process_exists: whether this process's registry row is still there
select 1 from worker.worker_process where id = %(id)s

-- prune_lock: try to become the one process that prunes now (session advisory lock; the others skip this round)
select pg_try_advisory_lock(%(key)s)

-- prune_unlock: end this process's pruning round
select pg_advisory_unlock(%(key)s)

-- prune_jobs: delete one batch of finished jobs outside bundles past their state's retention (a null age keeps them), oldest first, skipping rows another transaction holds
with doomed as (
    select id
    from worker.job
    where stopped_at < now() - make_interval(secs => %(min_age)s::float8)   -- job_stopped_at_idx
      and bundle_id is null                                                  -- they go with their bundle
      and stopped_at < now() - make_interval(secs => case
              when cancelled_at is not null then %(cancelled)s::float8
              when error_msg is not null then %(failed)s::float8
              else %(succeeded)s::float8 end)
    order by stopped_at
    limit %(batch)s
    for update skip locked
)
delete from worker.job j using doomed where j.id = doomed.id

-- prune_bundles: delete one batch of bundles whose jobs have all stopped, unchanged for their retention; their jobs go with them (on delete cascade)
with doomed as (
    select id
    from worker.job_bundle
    where num_jobs_stopped >= num_jobs
      and updated_at < now() - make_interval(secs => %(bundles)s::float8)
      -- not while its durable completion handler has yet to run: it reads the bundle
      and not exists (select from worker.job h
                       where h.stopped_at is null and h.type like 'jobqueue.bundle:%%'
                         and h.payload->>'bundle_id' = worker.job_bundle.id::text)
    order by updated_at
    limit %(batch)s
    for update skip locked
)
delete from worker.job_bundle b using doomed where b.id = doomed.id
