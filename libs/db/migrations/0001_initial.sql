-- Schema of the transcription gateway. Postgres is the system of record; events are derived.
CREATE SCHEMA IF NOT EXISTS media_pipeline;

CREATE TABLE media_pipeline.api_keys (
    id                      uuid PRIMARY KEY,
    name                    text NOT NULL,
    -- sha256 of the key: keys are 256-bit random tokens, so a fast hash cannot be brute-forced.
    key_hash                text NOT NULL UNIQUE,
    -- The first characters, shown in listings so operators can tell keys apart.
    key_hint                text NOT NULL,
    tenant_prefix           text NOT NULL DEFAULT '',
    is_bootstrap            boolean NOT NULL DEFAULT false,
    webhook_url             text,
    -- Signing secrets must be readable to sign; during a rotation both are used.
    webhook_secret          text,
    webhook_secret_previous text,
    webhook_disabled_at     timestamptz,
    webhook_disabled_reason text,
    rate_limit_per_minute   integer CHECK (rate_limit_per_minute IS NULL OR rate_limit_per_minute > 0),
    created_at              timestamptz NOT NULL DEFAULT now(),
    revoked_at              timestamptz
);

CREATE TABLE media_pipeline.audio_files (
    id              uuid PRIMARY KEY,
    api_key_id      uuid NOT NULL REFERENCES media_pipeline.api_keys (id),
    tenant_prefix   text NOT NULL DEFAULT '',
    phone           text,
    campaign_name   text NOT NULL,
    campaign_id     text,
    company         text,
    recording_id    text,
    url             text,
    url_sha1        text,
    idempotency_key text,
    started         timestamptz,
    stopped         timestamptz,
    bucket          text NOT NULL,
    b2_object_key   text NOT NULL UNIQUE,
    content_type    text NOT NULL,
    size_bytes      bigint NOT NULL,
    sha256          text NOT NULL,
    source_table    text,
    source_row_id   bigint,
    callback_url    text,
    model           text,
    language        text,
    timestamps      text NOT NULL DEFAULT 'segment',
    status          text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'processing', 'completed', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    trace_id        text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
-- The same tenant submitting the same URL gets the existing job back (reference: url_sha1).
CREATE UNIQUE INDEX audio_files_tenant_url
    ON media_pipeline.audio_files (api_key_id, tenant_prefix, url_sha1) WHERE url_sha1 IS NOT NULL;
CREATE UNIQUE INDEX audio_files_idempotency
    ON media_pipeline.audio_files (api_key_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX audio_files_status ON media_pipeline.audio_files (status, created_at);

CREATE TABLE media_pipeline.transcriptions (
    audio_file_id          uuid PRIMARY KEY REFERENCES media_pipeline.audio_files (id) ON DELETE CASCADE,
    status                 text NOT NULL DEFAULT 'completed',
    model                  text NOT NULL,
    engine                 text NOT NULL,
    language               text,
    duration_seconds       double precision,
    text                   text NOT NULL,
    word_count             integer NOT NULL DEFAULT 0,
    b2_transcript_json_key text NOT NULL,
    b2_transcript_txt_key  text NOT NULL,
    b2_transcript_srt_key  text,
    b2_transcript_vtt_key  text,
    metadata               jsonb NOT NULL DEFAULT '{}'::jsonb,
    raw_response           jsonb,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE media_pipeline.transcription_failures (
    audio_file_id   uuid PRIMARY KEY REFERENCES media_pipeline.audio_files (id) ON DELETE CASCADE,
    status          text NOT NULL CHECK (status IN ('transient', 'permanent')),
    error_code      text NOT NULL,
    error           text NOT NULL,
    attempts        integer NOT NULL DEFAULT 1,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    last_failed_at  timestamptz NOT NULL DEFAULT now(),
    cooldown_until  timestamptz
);

-- Transactional outbox: a row is written in the same transaction as the state it announces.
CREATE TABLE media_pipeline.outbox (
    id           bigserial PRIMARY KEY,
    event_id     uuid NOT NULL UNIQUE,
    subject      text NOT NULL,
    -- The exact bytes published, so a re-publish is byte-identical (Nats-Msg-Id de-dup).
    payload      bytea NOT NULL,
    headers      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text
);
CREATE INDEX outbox_unpublished ON media_pipeline.outbox (id) WHERE published_at IS NULL;

CREATE FUNCTION media_pipeline.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('media_pipeline_outbox', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON media_pipeline.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION media_pipeline.outbox_notify();

-- One row per (event, endpoint): the durable retry queue of the notifier.
CREATE TABLE media_pipeline.webhook_deliveries (
    id               bigserial PRIMARY KEY,
    event_id         uuid NOT NULL,
    event_type       text NOT NULL,
    audio_file_id    uuid NOT NULL REFERENCES media_pipeline.audio_files (id) ON DELETE CASCADE,
    api_key_id       uuid REFERENCES media_pipeline.api_keys (id),
    endpoint_url     text NOT NULL,
    payload          bytea NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'succeeded', 'failed', 'cancelled')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_status_code integer,
    last_error       text,
    last_latency_ms  integer,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, endpoint_url)
);
CREATE INDEX webhook_deliveries_due
    ON media_pipeline.webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_audio ON media_pipeline.webhook_deliveries (audio_file_id);

-- Every attempt, for the delivery log shown to API users (never response bodies).
CREATE TABLE media_pipeline.webhook_attempts (
    id           bigserial PRIMARY KEY,
    delivery_id  bigint NOT NULL REFERENCES media_pipeline.webhook_deliveries (id) ON DELETE CASCADE,
    attempt      integer NOT NULL,
    attempted_at timestamptz NOT NULL DEFAULT now(),
    status_code  integer,
    latency_ms   integer NOT NULL,
    error        text
);
CREATE INDEX webhook_attempts_delivery ON media_pipeline.webhook_attempts (delivery_id);

CREATE FUNCTION media_pipeline.webhook_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('media_pipeline_webhooks', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER webhook_deliveries_notify AFTER INSERT OR UPDATE ON media_pipeline.webhook_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION media_pipeline.webhook_notify();
