"""Highlights as character ranges, never markup: PostgreSQL's own `ts_headline` (the same
parser, stemmer and query as the match) marks every matching word with two private-use
characters; the text search config cannot mistake them for text because the text they mark has
those two characters replaced by spaces first (one character for one, so offsets stay those of
the stored text). Offsets count Unicode code points; `[from, to)`.
"""

from __future__ import annotations

from collections.abc import Sequence

START = "\ue000"
STOP = "\ue001"
# ts_headline options: the whole text, every match marked.
OPTIONS = f"StartSel={START}, StopSel={STOP}, HighlightAll=true"
# The SQL `translate(text, SENTINELS, '  ')` that blanks them out of the text beforehand.
SENTINELS = START + STOP


def blank(text: str) -> str:
    """The text as ts_headline saw it (the sentinels blanked)."""
    return text.replace(START, " ").replace(STOP, " ")


def ranges(marked: str, text: str) -> list[tuple[int, int]]:
    """The [from, to) ranges ts_headline marked in `marked`, as offsets into `text`; none if the
    marked text is not `text` with marks (ts_headline never rewrites it, but an index must not
    point into the wrong place if it ever did)."""
    out: list[tuple[int, int]] = []
    plain: list[str] = []
    pos = 0
    opened: int | None = None
    for piece in _split(marked):
        if piece == START:
            opened = pos
        elif piece == STOP:
            if opened is not None and pos > opened:
                out.append((opened, pos))
            opened = None
        else:
            plain.append(piece)
            pos += len(piece)
    if "".join(plain) != blank(text):
        return []
    return out


def _split(marked: str) -> list[str]:
    pieces: list[str] = []
    start = 0
    for i, ch in enumerate(marked):
        if ch in (START, STOP):
            if i > start:
                pieces.append(marked[start:i])
            pieces.append(ch)
            start = i + 1
    if start < len(marked):
        pieces.append(marked[start:])
    return pieces


def times(
    spans: Sequence[tuple[int, int]],
    word_chars: Sequence[int] | None,
    word_times: Sequence[float] | None,
    fallback: tuple[float, float],
) -> list[tuple[float, float]]:
    """For each highlighted range, the start and end (seconds) of the words it covers; the
    utterance's own times (`fallback`) where there are no word timings."""
    out: list[tuple[float, float]] = []
    for lo, hi in spans:
        start = end = None
        if word_chars and word_times:
            for k in range(min(len(word_chars), len(word_times)) // 2):
                a, b = word_chars[2 * k], word_chars[2 * k + 1]
                if a < 0 or a >= hi or b <= lo:
                    continue
                ws, we = float(word_times[2 * k]), float(word_times[2 * k + 1])
                start = ws if start is None else min(start, ws)
                end = we if end is None else max(end, we)
        if start is None or end is None:
            start, end = fallback
        out.append((round(start, 3), round(end, 3)))
    return out
