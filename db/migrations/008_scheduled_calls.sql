-- 008: calls scheduled with POST /v1/calls {"at": ...} are call_jobs rows without a
-- campaign (docs/dialer.md "Scheduled calls"): what the request gave is kept on the row
-- (its variables in call_jobs.variables, from 006),
-- and enqueued_at says a dialer node has put the row in Redis (set by one node only).
ALTER TABLE call_jobs ADD COLUMN IF NOT EXISTS assistant text;
ALTER TABLE call_jobs ADD COLUMN IF NOT EXISTS caller_id text;
ALTER TABLE call_jobs ADD COLUMN IF NOT EXISTS ref text;
ALTER TABLE call_jobs ADD COLUMN IF NOT EXISTS enqueued_at timestamptz;
CREATE INDEX IF NOT EXISTS call_jobs_scheduled ON call_jobs (created_at)
	WHERE campaign_id IS NULL AND status = 'queued';
