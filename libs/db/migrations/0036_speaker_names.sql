-- Names given to a job's speakers in the console ("Speaker A" -> "Mrs Jones"; libs/jobs/speakers.py).
-- The transcript objects keep the engine's labels; the API applies the names when it serves
-- txt/srt/vtt and adds them to the JSON (`speaker_names`), so a rerun keeps them.
CREATE TABLE media_pipeline.speaker_names (
    audio_file_id uuid PRIMARY KEY REFERENCES media_pipeline.audio_files (id) ON DELETE CASCADE,
    -- {"<speaker label or role>": "<name>"}
    names         jsonb NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    updated_by    text NOT NULL DEFAULT ''
);

-- Names are personal data: a job's tombstone (DELETE, retention) takes them with it.
CREATE FUNCTION media_pipeline.forget_speaker_names() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM media_pipeline.speaker_names WHERE audio_file_id = NEW.id;
    RETURN NEW;
END
$$;
CREATE TRIGGER audio_files_forget_speaker_names
    AFTER UPDATE OF status ON media_pipeline.audio_files
    FOR EACH ROW WHEN (NEW.status = 'deleted' AND OLD.status IS DISTINCT FROM 'deleted')
    EXECUTE FUNCTION media_pipeline.forget_speaker_names();
