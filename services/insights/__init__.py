"""Call insights: categories (a key's rules, offline) and LLM insights of completed transcripts."""
