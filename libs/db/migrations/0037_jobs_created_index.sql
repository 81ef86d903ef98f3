-- The operator lists every tenant's jobs newest first (libs/jobs/views.LIST_ANY_OWNER): the
-- same keyset as audio_files_key_created, without the key.
CREATE INDEX IF NOT EXISTS audio_files_created
    ON media_pipeline.audio_files (created_at DESC, id DESC);
