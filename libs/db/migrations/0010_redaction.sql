-- PCI/PII redaction (issue #14). Policies are stored in their canonical spelling
-- (libs.redaction.Policy.spec, e.g. 'credit_card,cvv,expiry;substitution=entity;keep=redacted');
-- '' is no redaction, which is what every key and job written before this migration has.

-- A tenant's default, the floor of every job its key submits (a job may add classes, never
-- remove them or keep the original when the key says redacted only).
ALTER TABLE media_pipeline.api_keys
    ADD COLUMN redact text NOT NULL DEFAULT '';

-- The job's effective policy, chosen once at submit: reruns and replays redact the same way.
ALTER TABLE media_pipeline.audio_files
    ADD COLUMN redact text NOT NULL DEFAULT '';

-- What was redacted, never the values: {policy, counts: {class: n}, spans: [{cls, start, end}],
-- timing, original_key?}. NULL when the job had no policy.
ALTER TABLE media_pipeline.transcriptions
    ADD COLUMN redaction jsonb;
