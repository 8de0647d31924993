-- Revision jobqueue_0002: go-jobqueue on the same database (docs/interop.md).
-- Never edit once released: change schema/worker.sql and add a revision.
--
-- Bundles are counted in the statements that stop, reset, cancel or delete a job (as
-- go-jobqueue's own statements do) instead of in triggers; a bundle may have 0 jobs;
-- cancelled jobs get started_at (go-jobqueue's claim looks at started_at only); attempts
-- and error history are kept for go-jobqueue's writes; a retry scheduled for later no
-- longer wakes every worker; bundle handler registrations carry their completion job's
-- retry count and a last-seen time; completion jobs get time-ordered ids and carry the
-- stopped bundle in their payload.

alter table worker.job_bundle drop constraint job_bundle_num_jobs_check;
alter table worker.job_bundle add constraint job_bundle_num_jobs_check check (num_jobs >= 0);

alter table worker.bundle_handler
    add column max_retry_count integer not null default 3 check (max_retry_count >= 0),
    add column last_seen_at timestamptz not null default now();

-- A cancelled job of 0.1.0 has started_at null: go-jobqueue's claim would run it.
update worker.job set started_at = stopped_at
where cancelled_at is not null and started_at is null;
-- A job that failed for good (or was cancelled) keeps no retries, as go-jobqueue's
-- SetJobError leaves it: its startup reaper resets stopped failed jobs with retries left.
update worker.job set current_retry_count = max_retry_count
where stopped_at is not null and error_msg is not null and current_retry_count < max_retry_count;

drop trigger unstopped_job_deleted on worker.job;
drop function worker.on_unstopped_job_deleted();

create or replace function worker.new_job_id() returns uuid
language sql volatile parallel safe as $$
    select encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
                                          placing substring(int8send(floor(extract(epoch from clock_timestamp())
                                                                           * 1000)::bigint) from 3)
                                          from 1 for 6),
                                  52, 1), 53, 1), 'hex')::uuid
$$;

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

do $$
begin
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
end
$$;
