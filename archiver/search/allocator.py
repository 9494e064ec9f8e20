"""How a searching process asks the C library's allocator to give memory back.

A search makes temporary arrays as long as its matches and frees them when it ends; with
glibc's defaults a process kept much of that memory after the search: the largest
query's temporaries in every thread's own heap. The settings here make a process's
memory between searches a fixed amount, whatever the archive's size.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # glibc's mallopt parameters
# Arrays of this size and up (a million messages' mask) go back to the system when freed;
# smaller ones reuse the heap, as mapping and faulting them in anew costs a query ~25%.
LARGE_ALLOCATION = 1024 * 1024
HEAP_KEPT = 32 * 1024 * 1024  # free heap kept for reuse rather than trimmed at once
HEAPS = 1  # one heap for all of a process's threads


@cache
def return_freed_memory_to_the_system() -> bool:
    """Tune glibc's allocator for searching; returns whether the C library allowed it
    (glibc does). Called once per searching process, before it starts its threads where
    it can (the web processes), and not in the indexer.

    - Every allocation of LARGE_ALLOCATION bytes or more becomes a mapping of its own, so
      that a query's large arrays go back to the system when the query ends. By default
      glibc raises that threshold to the size of the largest block freed so far, after
      which blocks of that size come from the heap and stay there.
    - Fixing that threshold also fixes the trim threshold, which would then give the
      heap's free top back after nearly every query and fault it in again: it is set
      high, a constant amount (HEAP_KEPT).
    - All threads share one heap (HEAPS). By default each of a web process's eight
      threads got a heap of its own, and each kept up to HEAP_KEPT of freed memory and its
      own fragments: 170 MB more per process after searches at a million messages. The
      interpreter lock lets one thread run Python at a time anyway, and eight threads
      searching on one heap finished sooner than on eight.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    mallopt = getattr(ctypes.CDLL(name), "mallopt", None)
    if mallopt is None:
        return False
    return bool(
        mallopt(_M_ARENA_MAX, HEAPS)
        and mallopt(_M_MMAP_THRESHOLD, LARGE_ALLOCATION)
        and mallopt(_M_TRIM_THRESHOLD, HEAP_KEPT)
    )
