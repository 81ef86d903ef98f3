-- Search across calls (issue #20), owned by libs/search.
--
-- A completed job has one search_calls row (who owns it, when, its typed conversation metrics)
-- and one search_utterances row per utterance of its redacted transcript (per segment when
-- it has no utterances; one row with the whole text when it has neither). Both are written in
-- the transaction that completes the job and removed in the one that deletes or requeues it,
-- so the index holds exactly the completed jobs.

-- The text search configuration a key's calls are indexed with, instead of the one the job's
-- language picks (`transcribe search config KEY CONFIG`).
CREATE TABLE media_pipeline.search_key_configs (
    api_key_id uuid PRIMARY KEY REFERENCES media_pipeline.api_keys (id) ON DELETE CASCADE,
    config     regconfig NOT NULL
);

-- Every configuration some call was indexed with: a query is parsed once per configuration.
CREATE TABLE media_pipeline.search_configs (
    config regconfig PRIMARY KEY
);

CREATE TABLE media_pipeline.search_calls (
    audio_file_id uuid PRIMARY KEY REFERENCES media_pipeline.audio_files (id) ON DELETE CASCADE,
    api_key_id    uuid NOT NULL,
    campaign_name text NOT NULL,
    -- The job's created_at: since/until and "newest first" are about the call, not the index.
    created_at    timestamptz NOT NULL,
    config        regconfig NOT NULL,
    duration      real NOT NULL,
    -- The conversation metrics (NULL when the transcript has no conversation; talk_ratio also
    -- when no speaker has the role agent): see libs/search/rows.py.
    talk_ratio    real,
    silence_share real,
    interruptions integer,
    overlap       real,
    wpm           real,
    indexed_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX search_calls_key_created
    ON media_pipeline.search_calls (api_key_id, created_at DESC, audio_file_id DESC);
CREATE INDEX search_calls_created
    ON media_pipeline.search_calls (created_at DESC, audio_file_id DESC);

CREATE TABLE media_pipeline.search_utterances (
    audio_file_id uuid NOT NULL,
    seq           integer NOT NULL,
    -- Copies of the call's owner, campaign and time: the text match filters on them without a
    -- join per matching utterance.
    api_key_id    uuid NOT NULL,
    campaign_name text NOT NULL,
    created_at    timestamptz NOT NULL,
    role          text,
    speaker       text,
    channel       smallint,
    start_s       real NOT NULL,
    end_s         real NOT NULL,
    text          text NOT NULL,
    config        regconfig NOT NULL,
    tsv           tsvector GENERATED ALWAYS AS (to_tsvector(config, text)) STORED,
    -- Word timings where the transcript has words: word k spans characters
    -- [word_chars[2k+1], word_chars[2k+2]) of text (-1: not found in the text) and seconds
    -- [word_times[2k+1], word_times[2k+2]).
    word_chars    integer[],
    word_times    real[],
    PRIMARY KEY (audio_file_id, seq)
);
CREATE INDEX search_utterances_tsv ON media_pipeline.search_utterances USING gin (tsv);
-- Newest matches first without visiting every match of a common word (libs/search/query.py:
-- relevance is ranked within windows of the newest matches): a key's, and everyone's.
CREATE INDEX search_utterances_key_created
    ON media_pipeline.search_utterances (api_key_id, created_at DESC);
CREATE INDEX search_utterances_created ON media_pipeline.search_utterances (created_at DESC);
