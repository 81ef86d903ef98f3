"""Notifications to people: rules per key (rules.py), events waiting for their message and the
storm guard (items.py), what a message says (message.py), Slack's answers (slack.py)."""
