"""What the insights service applies of redaction, on both sides of the chat model.

- **In**: the call (categories and the model read it) redacted with the job's policy joined
  with the key's current one (`policy_for`). The transcript JSON is normally redacted already
  (redacting it again changes nothing: placeholders stay placeholders), but a job transcribed
  before its key started redacting, or replayed from before, holds the values in clear: the
  key's policy says they must not leave now.
- **Out**: every free-text field of the model's answer (summary, reason, action items, the
  answers and their evidence quotes) redacted with the same policy, card numbers always (even
  without a policy: the model may echo or invent digits; no card number is ever stored, put on
  the stream, in a webhook, in Slack or in a mail from a model's answer).

Both run off the event loop for at most `timeout` seconds; a redaction that raises or runs out
of time raises `RedactionFailed` and the caller keeps nothing of the text (fail closed).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import msgspec

from libs.contracts import ActionItem, Insights, QuestionAnswer
from libs.redaction import EntityClass, Policy, redact_text, redact_transcript
from libs.redaction.deadline import run_bounded
from libs.transcript import Transcript

T = TypeVar("T")

REDACTION_FAILED = "redaction_failed"

# Threads of their own: a redaction never waits behind other work on the default executor.
_THREADS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="insights-redaction")


class RedactionFailed(Exception):
    """Redaction raised or ran out of time: nothing of the text may be kept or sent."""


def policy_for(job_spec: str, key_spec: str) -> Policy:
    """The job's policy (chosen at submit) joined with its key's current one: the classes of
    both, the job's substitution when it has one."""
    job, key = Policy.from_spec(job_spec), Policy.from_spec(key_spec)
    if not key.active:
        return job
    if not job.active:
        return key
    return msgspec.structs.replace(job, classes=job.classes | key.classes)


def answer_policy(policy: Policy) -> Policy:
    """What the model's answer is redacted with: the policy, card numbers always."""
    return msgspec.structs.replace(policy, classes=policy.classes | {EntityClass.CREDIT_CARD})


async def redact_call(transcript: Transcript, policy: Policy, *, timeout: float) -> Transcript:
    """The call as the categories and the model may read it (unchanged without a policy)."""
    if not policy.active:
        return transcript
    deadline = time.monotonic() + timeout
    call = functools.partial(redact_transcript, transcript, policy, deadline=deadline)
    redacted, _ = await _bounded(call, timeout)
    return redacted


async def redact_answer(insights: Insights, policy: Policy, *, timeout: float) -> Insights:
    """The model's answer with every free-text field redacted (`answer_policy`)."""
    deadline = time.monotonic() + timeout
    call = functools.partial(_answer, insights, answer_policy(policy), deadline)
    return await _bounded(call, timeout)


def _answer(insights: Insights, policy: Policy, deadline: float) -> Insights:
    def text(value: str) -> str:
        return redact_text(value, policy, deadline=deadline)[0]

    def optional(value: str | None) -> str | None:
        return None if value is None else text(value)

    # `outcome` is one of the template's own values (an enum in the schema, validated), and
    # `sentiment` a fixed word: neither can carry what the model made up.
    return msgspec.structs.replace(
        insights,
        summary=optional(insights.summary),
        reason=optional(insights.reason),
        action_items=tuple(
            ActionItem(owner=item.owner, text=text(item.text)) for item in insights.action_items
        ),
        answers=tuple(
            QuestionAnswer(
                question=a.question,
                answer=text(a.answer),
                evidence=optional(a.evidence),
                start=a.start,
                end=a.end,
            )
            for a in insights.answers
        ),
    )


async def _bounded(call: Callable[[], T], timeout: float) -> T:
    return await run_bounded(_THREADS, call, timeout, RedactionFailed)
