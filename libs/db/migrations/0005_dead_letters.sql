-- Dead letters: messages JetStream gave up on (MAX_DELIVERIES) or a consumer terminated
-- (MSG_TERMINATED). The advisory stream keeps the raw advisories; this table is what operators
-- list, and what a requeue marks, so a dead letter is handled once and stays auditable.
CREATE TABLE media_pipeline.dead_letters (
    id            bigserial PRIMARY KEY,
    -- 'max_deliveries' or 'terminated' (the advisory kind).
    kind          text NOT NULL CHECK (kind IN ('max_deliveries', 'terminated')),
    stream        text NOT NULL,
    consumer      text NOT NULL,
    stream_seq    bigint NOT NULL,
    deliveries    integer NOT NULL DEFAULT 0,
    reason        text,
    subject       text,
    -- What the original message was, when it could still be read from the stream and decoded.
    event_type    text,
    event_id      text,
    audio_file_id uuid REFERENCES media_pipeline.audio_files (id) ON DELETE SET NULL,
    tenant_prefix text,
    payload       bytea,
    advisory      jsonb NOT NULL DEFAULT '{}'::jsonb,
    occurred_at   timestamptz NOT NULL DEFAULT now(),
    captured_at   timestamptz NOT NULL DEFAULT now(),
    requeued_at   timestamptz,
    requeue_count integer NOT NULL DEFAULT 0,
    -- A redelivered advisory (the capture crashed before its ack) must not make a second row.
    UNIQUE (stream, consumer, stream_seq, kind, deliveries)
);
CREATE INDEX dead_letters_recent ON media_pipeline.dead_letters (captured_at DESC);
CREATE INDEX dead_letters_audio ON media_pipeline.dead_letters (audio_file_id);
CREATE INDEX dead_letters_open ON media_pipeline.dead_letters (captured_at) WHERE requeued_at IS NULL;
