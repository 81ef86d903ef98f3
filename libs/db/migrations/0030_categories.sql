-- Categories (issue #21), owned by libs/categories (store.py).
--
-- A key's categories: a name and a rule (the canonical JSON of libs/categories/rules.py, checked
-- before it is stored). `phrases` is the rule's phrase count, so the per-key limit is a sum.
CREATE TABLE media_pipeline.categories (
    api_key_id uuid NOT NULL REFERENCES media_pipeline.api_keys (id) ON DELETE CASCADE,
    name       text NOT NULL,
    rule       jsonb NOT NULL,
    phrases    integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (api_key_id, name)
);

-- The categories a completed job matched, one row per (job, category), with the evidence
-- (`[{start, end, text, role, speaker}]`, redacted text only). Written by the insights service
-- when a call completes and by `POST /api/categories/{name}/apply`; removed with the job
-- (DELETE, retention and requeue, libs/jobs) and with the category. The job rows are
-- tombstoned, not deleted, so the cascade only serves a job row really removed.
CREATE TABLE media_pipeline.category_matches (
    audio_file_id uuid NOT NULL REFERENCES media_pipeline.audio_files (id) ON DELETE CASCADE,
    name          text NOT NULL,
    matches       jsonb NOT NULL,
    evaluated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (audio_file_id, name)
);
-- A category's matches (removed with it; later a search filter by category).
CREATE INDEX category_matches_name ON media_pipeline.category_matches (name);
