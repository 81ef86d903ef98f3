-- Job lifecycle: listing a key's jobs, deleting a job with everything it stored, retention.
-- (Version 0009, reserved for this issue; versions may have gaps, they are applied in order.)

-- Listing: a key's jobs newest first, paginated by the keyset (created_at, id), so a page
-- boundary never moves when jobs are inserted concurrently.
CREATE INDEX audio_files_key_created
    ON media_pipeline.audio_files (api_key_id, created_at DESC, id DESC);

-- A deleted job stays as a tombstone: its ids, timestamps and who deleted it; its personal
-- content (phone, url, transcript text, raw response) is gone (libs/jobs/deletion.py).
ALTER TABLE media_pipeline.audio_files DROP CONSTRAINT audio_files_status_check;
ALTER TABLE media_pipeline.audio_files ADD CONSTRAINT audio_files_status_check
    CHECK (status IN ('queued', 'processing', 'completed', 'failed', 'deleted'));
ALTER TABLE media_pipeline.audio_files
    ADD COLUMN deleted_at timestamptz,
    ADD COLUMN deleted_by text;

-- The durable half of a deletion: recorded in the same transaction as the tombstone, with
-- every object key the job may have stored; `finished_at` is set once every object is gone.
-- A deletion whose objects could not be removed (S3 down) is retried by the finisher
-- (`next_attempt_at`, leased with FOR UPDATE SKIP LOCKED, so any number of replicas is safe).
CREATE TABLE media_pipeline.job_deletions (
    audio_file_id   uuid PRIMARY KEY REFERENCES media_pipeline.audio_files (id) ON DELETE CASCADE,
    requested_at    timestamptz NOT NULL DEFAULT now(),
    requested_by    text NOT NULL,
    -- 'audio_retention': only the audio object went (the job and its transcripts stay).
    reason          text NOT NULL CHECK (reason IN ('api', 'retention', 'audio_retention')),
    object_keys     text[] NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    finished_at     timestamptz
);
CREATE INDEX job_deletions_due
    ON media_pipeline.job_deletions (next_attempt_at) WHERE finished_at IS NULL;

-- Retention: a key's TTLs (seconds; NULL keeps forever). At submit, each job gets its expiry
-- times from its key's TTLs, shortened by the job's own (`audio_ttl`, `transcript_ttl` form
-- fields: downwards only), so a key's new TTLs apply to the jobs submitted afterwards.
-- `transcript_expires_at`: the whole job is deleted (as DELETE does); `audio_expires_at`: only
-- its audio object is removed (`audio_removed_at`), once the job is finished.
ALTER TABLE media_pipeline.api_keys
    ADD COLUMN audio_ttl_seconds bigint
        CHECK (audio_ttl_seconds IS NULL OR audio_ttl_seconds > 0),
    ADD COLUMN transcript_ttl_seconds bigint
        CHECK (transcript_ttl_seconds IS NULL OR transcript_ttl_seconds > 0);
ALTER TABLE media_pipeline.audio_files
    ADD COLUMN audio_expires_at timestamptz,
    ADD COLUMN transcript_expires_at timestamptz,
    ADD COLUMN audio_removed_at timestamptz;
CREATE INDEX audio_files_transcript_expiry ON media_pipeline.audio_files (transcript_expires_at)
    WHERE transcript_expires_at IS NOT NULL AND status <> 'deleted';
CREATE INDEX audio_files_audio_expiry ON media_pipeline.audio_files (audio_expires_at)
    WHERE audio_expires_at IS NOT NULL AND audio_removed_at IS NULL AND status <> 'deleted';

-- Progress of a running job (libs/jobs/progress.py): the latest stage / fraction / chunk shown
-- by /status, and when the last JobProgress event went out (events are rate-limited per job).
ALTER TABLE media_pipeline.audio_files
    ADD COLUMN progress jsonb,
    ADD COLUMN progress_updated_at timestamptz,
    ADD COLUMN progress_event_at timestamptz;

-- Opt-in `transcription.progress` webhooks of a key (libs/apikeys/endpoints.py).
ALTER TABLE media_pipeline.api_keys
    ADD COLUMN webhook_progress boolean NOT NULL DEFAULT false;
