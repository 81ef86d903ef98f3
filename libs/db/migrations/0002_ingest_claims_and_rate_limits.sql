-- Ingest: de-duplication claims for submissions in flight, and per-key token buckets.

-- A submission claims its de-duplication keys (tenant + url_sha1, Idempotency-Key) BEFORE it
-- downloads, so concurrent duplicates (on any ingest replica) wait for the first one instead of
-- downloading again. The claim records the object key it is about to write: a claim left behind
-- by a crashed process names the object (key without its extension) to delete, so no orphan
-- object survives the sweep.
CREATE TABLE media_pipeline.ingest_claims (
    api_key_id    uuid NOT NULL REFERENCES media_pipeline.api_keys (id) ON DELETE CASCADE,
    dedup_key     text NOT NULL,
    audio_file_id uuid NOT NULL,
    object_stem   text NOT NULL,
    claimed_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (api_key_id, dedup_key)
);
CREATE INDEX ingest_claims_expiry ON media_pipeline.ingest_claims (expires_at);

-- Token bucket per API key (rate_limit_per_minute on api_keys). Kept in Postgres so that the
-- limit holds across every ingest replica: one row update per request of a limited key.
CREATE TABLE media_pipeline.rate_buckets (
    api_key_id uuid PRIMARY KEY REFERENCES media_pipeline.api_keys (id) ON DELETE CASCADE,
    tokens     double precision NOT NULL,
    updated_at timestamptz NOT NULL
);
