-- Notifications to people (docs/notifications.md): which events of a key notify whom, and the
-- events waiting for their message. Owner: libs/notifications (rules.py, items.py).

CREATE TABLE media_pipeline.notification_rules (
    id              uuid PRIMARY KEY,
    api_key_id      uuid NOT NULL REFERENCES media_pipeline.api_keys (id) ON DELETE CASCADE,
    tenant_prefix   text NOT NULL,
    -- failed, dead_lettered, completed, category:<name>, outcome:<value>
    events          text[] NOT NULL CHECK (cardinality(events) > 0),
    campaign        text,
    target          text NOT NULL CHECK (target IN ('slack', 'email')),
    slack_url       text,
    emails          text[] NOT NULL DEFAULT '{}',
    disabled_at     timestamptz,
    disabled_reason text,
    -- The storm guard: no message of this rule before this time; what arrives earlier waits
    -- for one digest then (NOTIFY_INTERVAL_SECONDS after the previous message).
    quiet_until     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((target = 'slack') = (slack_url IS NOT NULL)),
    CHECK (target = 'slack' OR cardinality(emails) > 0)
);
CREATE INDEX notification_rules_key ON media_pipeline.notification_rules (api_key_id);

-- One row per (rule, event): the unique key makes a replayed or redelivered event notify
-- nothing more. `sent_at` NULL: waiting for the rule's next message.
CREATE TABLE media_pipeline.notification_items (
    id            bigserial PRIMARY KEY,
    rule_id       uuid NOT NULL REFERENCES media_pipeline.notification_rules (id) ON DELETE CASCADE,
    -- the event id, or dead_letter:<id>
    source        text NOT NULL,
    audio_file_id uuid REFERENCES media_pipeline.audio_files (id) ON DELETE CASCADE,
    item          jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    sent_at       timestamptz,
    delivery_id   bigint,
    UNIQUE (rule_id, source)
);
CREATE INDEX notification_items_waiting
    ON media_pipeline.notification_items (rule_id, id) WHERE sent_at IS NULL;
CREATE INDEX notification_items_audio ON media_pipeline.notification_items (audio_file_id);
