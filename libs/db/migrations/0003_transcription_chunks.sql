-- Finished chunks of a long recording, so a retried or redelivered job transcribes only the
-- chunks still missing. A row is reused only when its window, model and options match the
-- plan of the new attempt; rows go away when the job completes (or with the job).
CREATE TABLE media_pipeline.transcription_chunks (
    audio_file_id uuid NOT NULL REFERENCES media_pipeline.audio_files (id) ON DELETE CASCADE,
    chunk_index   integer NOT NULL CHECK (chunk_index >= 0),
    -- Samples at 16 kHz of the recording: [start_sample, end_sample) was sent to the engine.
    start_sample  bigint NOT NULL,
    end_sample    bigint NOT NULL,
    -- Model and options the result depends on, e.g. 'whisper-1|segment|en'.
    request_key   text NOT NULL,
    -- The chunk's canonical transcript (libs.transcript), timed from the chunk's start.
    transcript    jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (audio_file_id, chunk_index)
);
