-- Tenant isolation and idempotency (the "hostile input and tenant safety" round).

-- Where a job's transcripts go above `<campaign>/transcriptions/`: '' keeps the reference
-- layout (the operator's keys, and every job written before this migration); a tenant key's
-- job gets its own prefix, so two tenants never share a transcript path. Chosen once at submit,
-- so reruns and replays write to the same place.
ALTER TABLE media_pipeline.audio_files
    ADD COLUMN transcript_prefix text NOT NULL DEFAULT '';

-- sha256 of the canonical request (source, prefix, options, form fields; an upload by its
-- content sha256) of a job submitted with an Idempotency-Key: the key may be replayed only
-- with the same request (otherwise 422 idempotency_key_reused). NULL for jobs without a key
-- and for jobs written before this migration (their key replays as before).
ALTER TABLE media_pipeline.audio_files
    ADD COLUMN request_sha256 text;
