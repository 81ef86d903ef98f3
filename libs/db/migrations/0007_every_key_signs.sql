-- Every webhook is signed: every key has a `whsec_` signing secret from now on.
-- (Version 0007: 0006 is the tenant-transcripts / request-fingerprint migration of the same
-- issue, on a parallel branch; versions may have gaps, they are applied in order.)
--
-- Keys created before (without --webhook-url, or a bootstrap key without WEBHOOK_SECRET) get a
-- fresh secret here: 32 random bytes from two gen_random_uuid() (pg_strong_random; 244 random
-- bits), base64, as libs.apikeys.generate_webhook_secret makes them. Nobody has seen it: owners
-- who verify call rotate-secret (API or `transcribe webhooks rotate-secret`) to get a secret of
-- their own; receivers that did not verify see only one more header. The bootstrap key takes
-- WEBHOOK_SECRET when it is set (the next start replaces this one).
UPDATE media_pipeline.api_keys
SET webhook_secret = 'whsec_' || encode(
        uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()), 'base64')
WHERE webhook_secret IS NULL;

-- No key can lose its secret again: an unsigned delivery has nothing to be made from.
ALTER TABLE media_pipeline.api_keys
    ALTER COLUMN webhook_secret SET NOT NULL;
