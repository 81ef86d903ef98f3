-- Call-centre conversations (issue #13): who said what.

-- How the job treats a recording with several channels: 'auto' transcribes each channel on its
-- own when they carry different voices, 'true' always, 'false' downmixes. Jobs written before
-- this migration keep downmixing when rerun; ingest writes 'auto' unless asked otherwise.
-- channel_roles: the role of channel k (e.g. {agent,customer}); NULL means the key's map.
ALTER TABLE media_pipeline.audio_files
    ADD COLUMN multichannel text NOT NULL DEFAULT 'false'
        CHECK (multichannel IN ('auto', 'true', 'false')),
    ADD COLUMN channel_roles text[];

-- A key's (tenant's) channel -> role map; NULL means the default {agent,customer}.
ALTER TABLE media_pipeline.api_keys
    ADD COLUMN channel_roles text[];
