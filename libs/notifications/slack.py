"""Slack's answers to an incoming-webhook POST, as Slack gives them
(api.slack.com/messaging/webhooks#handling_errors), and what each means for the rule."""

from __future__ import annotations

import re
from typing import Literal

Verdict = Literal["ok", "disable", "retry"]

# 400 invalid_payload / invalid_blocks / user_not_found / channel_not_found ...,
# 403 action_prohibited / invalid_token, 404 no_service / no_team / channel_not_found,
# 410 channel_is_archived / team_disabled: the webhook will not work again until someone fixes
# it, so the rule is disabled with Slack's words as the reason.
DISABLING = frozenset({400, 403, 404, 410})
_WORD = re.compile(r"[^A-Za-z0-9_ .:\-]")


def answer_text(body: bytes) -> str:
    """Slack's answer body (a short error string such as `no_service`), safe to store."""
    text = body[:200].decode("utf-8", "replace").strip()
    return _WORD.sub("?", text)


def judge(status: int, body: bytes) -> Verdict:
    """200 `ok`: sent; 400/403/404/410: disable the rule; 429 (with Retry-After) and 5xx and
    anything else: retry on the schedule."""
    if status == 200:
        return "ok"
    if status in DISABLING:
        return "disable"
    return "retry"


def reason(status: int, body: bytes) -> str:
    text = answer_text(body)
    return f"Slack answered {status}" + (f" {text}" if text else "")
