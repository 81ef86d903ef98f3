-- Call insights (issue 21), owned by libs/insights/store.py: one row per completed job that
-- services/insights got to, written in the transaction that saves its category matches and
-- enqueues its InsightsReady event. No row yet for a completed job: its insights are pending.
-- DELETE and retention remove the row (libs/jobs/deletion.py) with the rest of the job.
CREATE TABLE media_pipeline.insights (
    audio_file_id     uuid PRIMARY KEY REFERENCES media_pipeline.audio_files (id) ON DELETE CASCADE,
    tenant_prefix     text NOT NULL,
    -- completed: the chat model answered; failed: it could not (reason says why);
    -- not_configured: no chat model, or insights turned off for the key (categories only).
    status            text NOT NULL CHECK (status IN ('completed', 'failed', 'not_configured')),
    reason            text,
    -- libs.contracts.Insights as JSON (NULL unless completed).
    insights          jsonb,
    model             text,
    prompt_tokens     integer NOT NULL DEFAULT 0,
    completion_tokens integer NOT NULL DEFAULT 0,
    -- The TranscriptReady event this row answers: a redelivery or replay of it is not asked
    -- again once completed (no second bill from the model); a new transcription (rerun) is.
    source_event_id   text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Search's `outcome` filter.
CREATE INDEX insights_outcome ON media_pipeline.insights ((insights->>'outcome'))
    WHERE insights IS NOT NULL;
