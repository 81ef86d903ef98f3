"""What the chat model reads: the instructions from the template and the call's turns as lines
`[mm:ss] Agent: text`, cut into parts that fit the model's context.

Only the turns' (redacted) text, their times and their roles or speaker labels are sent;
nothing else about the call (no phone, no key, no campaign name, no file names).

Tokens are estimated, not counted (no tokenizer for every model a server may run): one token
per 3 bytes of UTF-8. English runs at about 4 characters a token, so this overestimates it by
a third, which leaves room for digits, names and non-Latin scripts, which tokenize worse.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Sequence
from typing import Protocol

from libs.llm import answer
from libs.llm.template import InsightTemplate

BYTES_PER_TOKEN = 3
# Every message costs a few tokens of framing (role, separators).
MESSAGE_OVERHEAD_TOKENS = 8
# Kept free for the answer: a quarter of the context, at most this many tokens.
MAX_ANSWER_TOKENS = 4096
# Below this many tokens for the call's lines, a part says too little to be worth asking.
MIN_PART_TOKENS = 200


class TimedText(Protocol):
    @property
    def start(self) -> float: ...
    @property
    def role(self) -> str | None: ...
    @property
    def speaker(self) -> str | None: ...
    @property
    def text(self) -> str: ...


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text.encode("utf-8", "replace")) / BYTES_PER_TOKEN)


def stamp(seconds: float) -> str:
    """`mm:ss` (minutes go past 59 in calls over an hour: `75:03`)."""
    whole = max(0, int(seconds))
    return f"{whole // 60:02d}:{whole % 60:02d}"


def parse_stamp(raw: str | None) -> float | None:
    """Seconds from `mm:ss`, `[mm:ss]` or `h:mm:ss`; None when it is not one."""
    if not raw:
        return None
    parts = raw.strip().strip("[]").split(":")
    if not 2 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        return None
    seconds = 0
    for p in parts:
        seconds = seconds * 60 + int(p)
    return float(seconds)


# Unicode category Cc (C0, DEL, C1) and lone surrogates (Cs): never sent.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _one_line(text: str) -> str:
    """Control characters (newlines included) become spaces: a turn is exactly one line, so no
    text can pose as another speaker's line."""
    return " ".join(_CONTROL.sub(" ", text).split())


@functools.lru_cache(maxsize=1024)
def who(role: str | None, speaker: str | None) -> str:
    """How a turn's speaker is named: its role ("Agent"), else its label, else "Speaker"."""
    if role:
        return _one_line(role).capitalize()
    if speaker:
        return _one_line(speaker)
    return "Speaker"


def line(turn: TimedText) -> str:
    return f"[{stamp(turn.start)}] {who(turn.role, turn.speaker)}: {_one_line(turn.text)}"


@functools.lru_cache(maxsize=512)
def instructions(template: InsightTemplate, *, with_schema: bool) -> str:
    """The system message. `with_schema`: the answer's JSON Schema written out, for a server
    that cannot be given it as response_format (json_object mode)."""
    out = [
        "You analyse one recorded customer service phone call between an agent and a customer.",
        "The transcript comes as lines `[mm:ss] Role: text`; personal data in it was replaced"
        " by placeholders such as [CREDIT_CARD] or [REDACTED]: never guess what they hid.",
        "Answer with one JSON object and nothing else. Use only what the transcript says.",
    ]
    if template.summary:
        out.append("summary: two or three sentences on what happened in the call.")
    if template.reason:
        out.append("reason: in a few words, why the customer called.")
    if template.outcomes:
        choices = ", ".join(json.dumps(o, ensure_ascii=False) for o in template.outcomes)
        out.append(f"outcome: exactly one of {choices}.")
    if template.action_items:
        out.append(
            "action_items: what someone must still do after the call, each with its owner"
            ' ("agent" or "customer") and a short text; an empty list when nothing is left.'
        )
    if template.sentiment:
        out.append(
            "sentiment: for each role that speaks (agent, customer), positive, neutral or negative."
        )
    if template.questions:
        out.append(
            "answers: one entry per question below, by its id. `answer` is yes or no for a"
            " yes/no question, else a short text; `evidence` a short quote of the line that"
            " shows it and `at` that line's time as mm:ss (both null when nothing shows it)."
        )
        for q in template.questions:
            kind = "yes/no" if q.kind == "yes_no" else "text"
            out.append(f"- {q.id} ({kind}): {_one_line(q.text)}")
    if with_schema:
        out.append("The JSON object must match this JSON Schema:")
        schema = answer.strict_schema(template)
        out.append(json.dumps(schema, ensure_ascii=False, separators=(",", ":")))
    return "\n".join(out)


def user_message(lines: Sequence[str], part: int, parts: int) -> str:
    head = "Transcript of the call (JSON answer):"
    if parts > 1:
        head = (
            f"Part {part} of {parts} of the call's transcript (answer about this part only,"
            " as JSON):"
        )
    return "\n".join([head, *lines])


def answer_reserve(context_tokens: int) -> int:
    return min(MAX_ANSWER_TOKENS, context_tokens // 4)


def line_budget(context_tokens: int, system: str) -> int:
    """Tokens left for the call's lines in one request: the context less the instructions
    with the schema (`system`: the server counts the schema whether it is sent as text or as
    response_format), the framing and the answer's reserve."""
    return (
        context_tokens
        - estimate_tokens(system)
        - 3 * MESSAGE_OVERHEAD_TOKENS
        - answer_reserve(context_tokens)
        - estimate_tokens(user_message([], 99, 99))
    )


def split(lines: Sequence[str], budget: int) -> list[list[str]]:
    """The lines in consecutive parts of at most `budget` estimated tokens each (a line longer
    than that is cut at spaces, each piece keeping the line's time and speaker)."""
    parts: list[list[str]] = []
    current: list[str] = []
    used = 0
    for text in (piece for full in lines for piece in pieces(full, budget)):
        cost = estimate_tokens(text) + 1  # the newline
        if current and used + cost > budget:
            parts.append(current)
            current, used = [], 0
        current.append(text)
        used += cost
    if current:
        parts.append(current)
    return parts


def pieces(full: str, budget: int) -> list[str]:
    """One line as pieces of at most `budget` tokens (itself when it fits)."""
    if estimate_tokens(full) + 1 <= budget:
        return [full]
    head, _, body = full.partition(": ")
    prefix = f"{head}: "
    room = max(1, (budget - 1) * BYTES_PER_TOKEN - len(prefix.encode()))
    out: list[str] = []
    words: list[str] = []
    size = 0
    for word in body.split(" "):
        cost = len(word.encode()) + 1
        if words and size + cost > room:
            out.append(prefix + " ".join(words))
            words, size = [], 0
        while len(word.encode()) > room:
            # One "word" longer than a whole part: cut it by characters.
            cut = max(1, room // 4)
            out.append(prefix + word[:cut])
            word = word[cut:]
        words.append(word)
        size += len(word.encode()) + 1
    if words:
        out.append(prefix + " ".join(words))
    return out
