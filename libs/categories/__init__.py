"""Categories (issue #21): a key's named rules on what was said in a call, by whom and when,
its conversation metrics and its redactions; evaluated offline and deterministically.

- `rules.parse(raw)` -> `Rule` (the rule language, its limits; `InvalidInput` naming the JSON
  path of the bad part), `rules.dump(rule)` -> its canonical JSON;
- `call.Call`: what a rule looks at (redacted utterances, duration, conversation, redaction
  counts), `Call.from_transcript(...)`;
- `evaluate.evaluate(categories, call)` -> the matching categories with their evidence (pure);
- `store`: owner of `media_pipeline.categories` and `media_pipeline.category_matches`
  (migration 0030).

The language, its limits and the evidence: docs/categories.md.
"""
