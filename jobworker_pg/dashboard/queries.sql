-- The dashboard's SQL, as named blocks ("-- name: why"), parsed like jobworker_pg/queries.sql.
-- Every statement reads through an index: with a million finished jobs no page may scan the
-- table. State predicates are spelled out literally so that the planner matches the partial
-- indexes; optional filters are "(%(x)s is null or ...)", folded away because the dashboard
-- never prepares statements (each is planned with its values).

-- dash_waiting_by_type: jobs not started, per type and state (job_available_idx)
select type,
       count(*) filter (where error_msg is null and current_retry_count = 0
                          and (start_at is null or start_at <= now())) as pending,
       count(*) filter (where error_msg is null and current_retry_count = 0
                          and start_at > now()) as scheduled,
       count(*) filter (where error_msg is not null or current_retry_count > 0) as retrying,
       count(*) filter (where start_at is null or start_at <= now()) as due,
       min(created_at) filter (where start_at is null or start_at <= now()) as oldest_due
from worker.job
where started_at is null and stopped_at is null
group by type

-- dash_running_by_type: running jobs per type (job_running_idx)
select type, count(*)
from worker.job
where started_at is not null and stopped_at is null
group by type

-- dash_failed_by_type: failed and cancelled jobs per type (job_failed_idx)
select type,
       count(*) filter (where cancelled_at is null) as failed,
       count(*) filter (where cancelled_at is not null) as cancelled
from worker.job
where stopped_at is not null and error_msg is not null
group by type

-- dash_recent_by_type: jobs finished in the last hour per type, succeeded and failed (job_stopped_at_idx)
select type,
       count(*) filter (where error_msg is null) as succeeded,
       count(*) filter (where error_msg is not null and cancelled_at is null) as failed
from worker.job
where stopped_at is not null and stopped_at > now() - interval '1 hour'
group by type

-- dash_finished_capped: finished jobs counted exactly up to a cap (an index-only scan of job_stopped_at_idx)
select count(*) from (
    select 1 from worker.job where stopped_at is not null limit %(cap)s
) as capped

-- dash_finished_estimate: the planner's estimate of all finished jobs, for totals past the cap
explain (format json) select 1 from worker.job where stopped_at is not null

-- dash_per_minute: succeeded and failed jobs per minute over the last hour (job_stopped_at_idx)
select date_trunc('minute', stopped_at) as minute,
       count(*) filter (where error_msg is null) as succeeded,
       count(*) filter (where error_msg is not null and cancelled_at is null) as failed
from worker.job
where stopped_at is not null and stopped_at > now() - interval '1 hour'
group by 1
order by 1

-- dash_now: the database clock, against which the page shows ages
select now()

-- dash_bundle_counts: bundles open and all (job_bundle is one row per bundle, far smaller than job)
select count(*) filter (where num_jobs_stopped < num_jobs), count(*) from worker.job_bundle

-- dash_jobs: one page of jobs, newest first (keyset on the primary key; ids are time-ordered).
-- "true /* state */" is replaced by the state's condition (_data.py), written out so that the
-- planner matches it to that state's partial index.
select id, bundle_id, type, payload, priority, origin, max_retry_count, current_retry_count,
       start_at, started_at, worker_alive_at, stopped_at, error_msg, error_data, result,
       updated_at, created_at, attempt, errors, cancelled_at, claim_token, unique_key, scheduled_for,
       queue, meta, timeout, concurrency_key
from worker.job
where true /* state */
  and (%(before)s::uuid is null or id < %(before)s::uuid)
  and (%(type)s::text is null or type = %(type)s::text)
  and (%(origin)s::text is null or origin = %(origin)s::text)
  and (%(bundle)s::uuid is null or bundle_id = %(bundle)s::uuid)
  and (%(queue)s::text is null or queue = %(queue)s::text)
order by id desc
limit %(limit)s

-- dash_job_trace: the trace context stored with a job (the job page shows its trace id)
select trace_context from worker.job where id = %(id)s

-- dash_bundles: one page of bundles, newest first (keyset on the primary key)
select id, type, origin, num_jobs, num_jobs_stopped, updated_at, created_at
from worker.job_bundle
where (%(before)s::uuid is null or id < %(before)s::uuid)
order by id desc
limit %(limit)s

-- dash_bundle: one bundle row
select id, type, origin, num_jobs, num_jobs_stopped, updated_at, created_at
from worker.job_bundle where id = %(id)s

-- dash_bundle_jobs: the first jobs of a bundle in the order they were added (job_bundle_id_idx)
select id, bundle_id, type, payload, priority, origin, max_retry_count, current_retry_count,
       start_at, started_at, worker_alive_at, stopped_at, error_msg, error_data, result,
       updated_at, created_at, attempt, errors, cancelled_at, claim_token, unique_key, scheduled_for,
       queue, meta, timeout, concurrency_key
from worker.job
where bundle_id = %(id)s
order by created_at, id
limit %(limit)s

-- dash_bundle_completion: the durable completion job of a bundle, if its type has a handler (job_bundle_completion_idx)
select id, stopped_at, error_msg
from worker.job
where type like 'jobqueue.bundle:%%' and payload ->> 'bundle_id' = %(id)s::text
order by created_at desc
limit 1

-- dash_workers: registered worker processes, most recent heartbeat first, with its age by the database clock
select id, host, pid, threads, busy, job_types, started_at, heartbeat_at,
       extract(epoch from now() - heartbeat_at)::float8 as heartbeat_age
from worker.worker_process
order by heartbeat_at desc
limit 500

-- dash_failed_ids_of_type: failed jobs of one type to retry in bulk (job_failed_idx), cancelled ones aside
select id
from worker.job
where stopped_at is not null and error_msg is not null and cancelled_at is null and type = %(type)s
order by id
limit %(limit)s

-- dash_count_failed_of_type: how many failed jobs of one type a bulk retry would reset (job_failed_idx)
select count(*)
from worker.job
where stopped_at is not null and error_msg is not null and cancelled_at is null and type = %(type)s

-- dash_count_finished_before: how many succeeded jobs outside bundles a bulk delete would remove, counted up to a cap
select count(*) from (
    select 1 from worker.job
    where stopped_at is not null and stopped_at < now() - make_interval(days => %(days)s)
      and error_msg is null and bundle_id is null
    limit %(cap)s
) as capped

-- dash_queues: every queue with rules or unstopped jobs, its rules and waiting and running jobs (job_queue_available_idx, job_running_idx; never the finished jobs)
with waiting as (
    select queue, count(*) as n
    from worker.job
    where started_at is null and stopped_at is null
    group by queue
), running as (
    select queue, count(*) as n
    from worker.job
    where started_at is not null and stopped_at is null
    group by queue
), names as (
    select name from worker.queue
    union select queue from waiting
    union select queue from running
)
select n.name, r.concurrency, r.per_key_concurrency, r.rate_limit_count,
       extract(epoch from r.rate_limit_per)::float8, coalesce(r.paused, false),
       coalesce(w.n, 0), coalesce(ru.n, 0)
from names n
left join worker.queue r on r.name = n.name
left join waiting w on w.queue = n.name
left join running ru on ru.queue = n.name
order by n.name
