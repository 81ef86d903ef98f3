-- Notification messages ride the notifier's delivery queue and log (webhook_deliveries,
-- webhook_attempts): `channel` says how a row is sent, `rule_id` which rule it belongs to.
-- Their endpoint_url is `slack:<rule id>` / `email:<rule id>`: the Slack URL (a secret) and
-- the addresses are read from the rule at send time, never copied into the log.
ALTER TABLE media_pipeline.webhook_deliveries
    ADD COLUMN channel text NOT NULL DEFAULT 'webhook'
        CHECK (channel IN ('webhook', 'slack', 'email')),
    ADD COLUMN rule_id uuid REFERENCES media_pipeline.notification_rules (id) ON DELETE SET NULL;
CREATE INDEX webhook_deliveries_rule
    ON media_pipeline.webhook_deliveries (rule_id, created_at) WHERE rule_id IS NOT NULL;
