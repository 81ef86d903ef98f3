-- Where each job's events are in the stream, so a deleted job's can be erased from it
-- (libs/outbox/published.py). The outbox relay records (stream, seq) from the PubAck of every
-- event that names a job, in the transaction that marks it published; a deletion makes its
-- job's rows due (`erase_at`), and the ingest sweeper erases those messages (JetStream delete
-- with erase) and drops the rows; the others are purged once the stream's MaxAge has taken
-- their message. No foreign key to audio_files on purpose: the relay's insert must never wait
-- for the lock a deletion holds on the job's row (the deletion waits for the relay's outbox
-- rows: that would be a deadlock).
CREATE TABLE media_pipeline.published_events (
    stream          text NOT NULL,
    seq             bigint NOT NULL,
    audio_file_id   uuid NOT NULL,
    published_at    timestamptz NOT NULL DEFAULT now(),
    -- NULL: live; set: erase the message once this time has passed (a deletion, or a retry).
    erase_at        timestamptz,
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    PRIMARY KEY (stream, seq)
);
CREATE INDEX published_events_job ON media_pipeline.published_events (audio_file_id);
CREATE INDEX published_events_due
    ON media_pipeline.published_events (erase_at) WHERE erase_at IS NOT NULL;
CREATE INDEX published_events_age ON media_pipeline.published_events (published_at);
