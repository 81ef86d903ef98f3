-- Issue 24 (item 4): the redaction record (`transcriptions.redaction`) names no object key: every
-- key names the phone (libs/layout), and the keys are recomputed from the job's audio key when
-- needed. Records written before lose theirs: `original_key` becomes `original_stored: true`,
-- and `audio.key` goes (/status derives `audio_key` from the job's audio key).
-- (Version 0024, reserved for this issue; versions may have gaps, they are applied in order.)
UPDATE media_pipeline.transcriptions
SET redaction = (redaction - 'original_key') || '{"original_stored": true}'::jsonb
WHERE redaction ? 'original_key';

UPDATE media_pipeline.transcriptions
SET redaction = redaction #- '{audio,key}'
WHERE redaction -> 'audio' ? 'key';
