"""Give memory freed by one stage back to the system before the next stage starts.

A stage (ingest, annotate, a step of analyze) allocates and frees hundreds of MiB: Arrow
buffers from its pools, numpy arrays and Python objects from the C library's ``malloc``.
glibc keeps freed heap memory for reuse (its threshold for handing large blocks straight
to ``mmap`` grows after each large free, so later large arrays come from the heap), and
Arrow's pools keep freed pages for a while. In one process that runs several stages (the
Python API, a notebook, ``pathexp demo``) the next stage's peak then lands on top of the
last one's leftovers. :func:`release` asks every allocator to return what is free: it
changes no data, only the resident size.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from collections.abc import Callable

import pyarrow as pa

__all__ = ["release"]


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


def release() -> None:
    """Return the free memory of Arrow's pools and of the C heap to the system.

    Call it between stages, when their tables are gone; it costs milliseconds.
    """
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
