"""Search across calls (issue #20): the owner of `search_calls`, `search_utterances`,
`search_configs` and `search_key_configs` (migration 0013).

- `index.write(conn, job_id, transcript)`: the call's rows, inside the completing transaction;
  `index.forget(conn, job_id)`: removed, inside the deleting (retention) or requeuing one.
- `query.parse(params)` / `query.search(conn, search, api_key_id=...)`: a page of hits;
  `query.within_call(...)`: every match of one call with word times.
- `index.reindex_batch(...)`: completed jobs of before the index, from their stored transcripts.
"""

from __future__ import annotations

from libs.search.index import forget, reindex_batch, write

__all__ = ["forget", "reindex_batch", "write"]
