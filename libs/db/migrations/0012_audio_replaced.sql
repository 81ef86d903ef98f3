-- Audio redaction with keep=redacted (issue #19): the redacted audio is stored under a key whose
-- extension says what it holds (`<uuid>.wav`), the job's object key moves to it, and the
-- original object (`<uuid>.mp3`, ...) is removed through job_deletions, durably, once the row
-- points to the new key: reason 'audio_replaced' (the job and its transcripts stay).
ALTER TABLE media_pipeline.job_deletions DROP CONSTRAINT job_deletions_reason_check;
ALTER TABLE media_pipeline.job_deletions ADD CONSTRAINT job_deletions_reason_check
    CHECK (reason IN ('api', 'retention', 'audio_retention', 'audio_replaced'));
