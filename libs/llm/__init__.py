"""LLM call insights (issue #21): templates (template.py) and the chat model (insights.py)."""
