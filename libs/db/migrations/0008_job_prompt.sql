-- A job's prompt (vocabulary or context for the model: names, products, spellings), given at
-- submission and sent with every attempt, rerun and requeue.
ALTER TABLE media_pipeline.audio_files
    ADD COLUMN prompt text;
