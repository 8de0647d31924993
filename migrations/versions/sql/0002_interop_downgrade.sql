-- Downgrade of revision jobqueue_0002; revision 0001's script runs after it and
-- restores 0001's functions and the unstopped_job_deleted trigger.
-- Fails on a bundle of 0 jobs (0001 does not allow them): delete those first.
drop trigger job_attempt_unrecorded on worker.job;
drop function worker.on_job_attempt_unrecorded();
drop function worker.new_job_id();
alter table worker.bundle_handler drop column max_retry_count, drop column last_seen_at;
alter table worker.job_bundle drop constraint job_bundle_num_jobs_check;
alter table worker.job_bundle add constraint job_bundle_num_jobs_check check (num_jobs > 0);
