-- LLM insight templates (issue #21), owned by libs/llm/template.py.
--
-- What the chat model is asked about a key's calls: one template per key (campaign '') and
-- optionally one per campaign, which wins for that campaign's calls. The JSON is an
-- InsightTemplate (summary, reason, outcomes, action_items, sentiment, questions).
CREATE TABLE media_pipeline.insight_templates (
    api_key_id uuid NOT NULL REFERENCES media_pipeline.api_keys (id) ON DELETE CASCADE,
    campaign   text NOT NULL DEFAULT '',
    template   jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (api_key_id, campaign)
);

-- An operator's per-key switch: enabled = false sends nothing of the key's calls to the chat
-- model (categories still run). No row: insights on wherever a model is configured.
CREATE TABLE media_pipeline.insight_key_switches (
    api_key_id uuid PRIMARY KEY REFERENCES media_pipeline.api_keys (id) ON DELETE CASCADE,
    enabled    boolean NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now()
);
