"""Refusing at submit the recordings whose own header says they are too long or not real audio
rates (libs.audio.limits), before anything is stored: 413 `audio_too_long`, 415
`unsupported_sample_rate`.

An upload is on disk, so its size (and an Ogg file's last page) are at hand and a WAV's duration
is exact. A download is streamed to the object store: its header is read from the first
`HEADER_BYTES`, and a WAV whose header leaves the data size open (a streaming writer's) is
counted as it passes and cut off once its bytes are longer than the limit (the caller's
clean-up then deletes what was written).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import BinaryIO

from libs.audio.header import HEADER_BYTES, TAIL_BYTES, Header, read_header
from libs.audio.limits import AudioLimits, AudioRefused, AudioTooLong, too_long_detail
from libs.errors import DomainError, TooLarge, UnsupportedMedia

__all__ = ["HEADER_BYTES", "check_file", "check_stream"]


def refusal(exc: AudioRefused) -> DomainError:
    if isinstance(exc, AudioTooLong):
        return TooLarge(exc.detail, code=exc.code)
    return UnsupportedMedia(exc.detail, code=exc.code)


def check_file(fh: BinaryIO, limits: AudioLimits) -> None:
    """Refuse the spooled upload `fh` (blocking reads; the file position is left anywhere)."""
    fh.seek(0)
    head = fh.read(HEADER_BYTES)
    size = os.fstat(fh.fileno()).st_size
    tail = b""
    if head[:4] == b"OggS":
        fh.seek(max(0, size - TAIL_BYTES))
        tail = fh.read(TAIL_BYTES)
    _check(read_header(head, size=size, tail=tail), limits)


def check_stream(
    head: bytes, body: AsyncIterator[bytes], limits: AudioLimits
) -> AsyncIterator[bytes]:
    """Refuse a download whose first bytes `head` tell enough; else the body to store, counted
    when only its length can tell (see the module docstring)."""
    header = read_header(head)
    _check(header, limits)
    if header.duration is None and header.data_offset is not None and header.bytes_per_second:
        return _counted(body, header.data_offset, header.bytes_per_second, limits.max_seconds)
    return body


def _check(header: Header, limits: AudioLimits) -> None:
    try:
        limits.check(header)
    except AudioRefused as exc:
        raise refusal(exc) from None


async def _counted(
    body: AsyncIterator[bytes], offset: int, per_second: int, limit: float
) -> AsyncIterator[bytes]:
    budget = offset + int(limit * per_second)
    seen = 0
    async for chunk in body:
        seen += len(chunk)
        if seen > budget:
            seconds = (seen - offset) / per_second
            raise TooLarge(too_long_detail(seconds, limit, at_least=True), code="audio_too_long")
        yield chunk
