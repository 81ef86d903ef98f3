-- Webhook delivery, second round: endpoint health (auto-disable), test events, resend rounds.

-- A key's default endpoint is disabled automatically after sustained failure: every attempt to
-- it failing for a period (see services/notifier/policy.py). These two columns track the streak;
-- any 2xx resets them.
ALTER TABLE media_pipeline.api_keys
    ADD COLUMN webhook_failing_since        timestamptz,
    ADD COLUMN webhook_consecutive_failures integer NOT NULL DEFAULT 0;

-- Test events ("send a test event to an endpoint") belong to no job.
ALTER TABLE media_pipeline.webhook_deliveries
    ALTER COLUMN audio_file_id DROP NOT NULL;

-- `attempts` counts every attempt ever made (the attempt log numbers follow it); `schedule_step`
-- counts attempts of the current round and indexes the retry schedule. A replay, a resend or a
-- recovery starts a new round without renumbering the history.
ALTER TABLE media_pipeline.webhook_deliveries
    ADD COLUMN schedule_step integer NOT NULL DEFAULT 0;
UPDATE media_pipeline.webhook_deliveries SET schedule_step = attempts;

-- Listing a key's deliveries and recovering "everything failed since T" for one key.
CREATE INDEX webhook_deliveries_key_created
    ON media_pipeline.webhook_deliveries (api_key_id, created_at);
