-- A replay of an event whose delivery is being POSTed right now must not be lost: the attempt
-- in flight carries the old round, and its end would overwrite a re-arm made meanwhile.
-- `leased_at` marks a row claimed by a notifier (NULL once the attempt is recorded or the lease
-- handed back; a lease is live while next_attempt_at is still ahead); `rearm` asks the end of
-- that attempt to start one more round (libs/webhooks/queue.py, SCHEDULE and FINISH).
ALTER TABLE media_pipeline.webhook_deliveries
    ADD COLUMN IF NOT EXISTS leased_at timestamptz,
    ADD COLUMN IF NOT EXISTS rearm boolean NOT NULL DEFAULT false;
