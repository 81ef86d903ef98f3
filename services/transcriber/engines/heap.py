"""Giving the C heap's free pages back to the system after a large transient allocation.

One offline request decodes a whole window and computes its features (~0.75 MB per second of
audio at the peak, numpy in worker threads). Freed, that memory mostly stays with glibc's
allocator (its per-thread arenas and a raised mmap threshold), so the process's RSS stayed at
its highest for good: the attack run saw 988 MB become 1,658 MB and stay there. `malloc_trim`
returns the free pages; measured with bench/long_audio_memory.py --engine offline, 407 MB ->
237 MB after a job of 30-second windows. Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any


@functools.cache
def _malloc_trim() -> Any:
    # The process's own symbols: the C library it runs on (no library search, no subprocess).
    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)
    except OSError:
        return None


def release_free_heap() -> None:
    """Return the C heap's free pages to the system (glibc's malloc_trim); cheap (~ms)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
