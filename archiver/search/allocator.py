"""How a searching process gives the memory of its queries back to the system.

A search makes temporary arrays as long as its matches and frees them when it ends; with
glibc's defaults a process kept much of that memory after the search, a figure that grew
with the archive. Called once per searching process (`whoosh_index`), not in the indexer.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
# Arrays of this size and up (a million messages' mask) go back to the system when freed;
# smaller ones reuse the heap, as mapping and faulting them in anew costs a query ~25%.
LARGE_ALLOCATION = 1024 * 1024
HEAP_KEPT = 4 * 1024 * 1024  # free heap kept for reuse rather than trimmed at once


@cache
def return_large_arrays_to_the_system() -> bool:
    """Make every allocation of LARGE_ALLOCATION bytes or more a mapping of its own, so
    that a query's temporary arrays (a few bytes per match each) go back to the system
    when the query ends; returns whether the C library allowed it (glibc does).

    By default glibc raises that threshold to the size of the largest block freed so far,
    after which blocks of that size come from the heap and stay there: a searching process
    kept its largest query's worth of temporaries, a figure that grows with the archive.
    Fixing the threshold also fixes the trim threshold, which would then give the heap's
    free top back after nearly every query and fault it in again: it is set to a constant
    amount, HEAP_KEPT. Each of a web process's threads has a heap of its own, and each
    keeps that much: at 32 MB the two web processes kept 80 MB more after searches at a
    million messages than at 4 MB, and answered no faster. Called once per searching process, not
    in the indexer.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    mallopt = getattr(ctypes.CDLL(name), "mallopt", None)
    if mallopt is None:
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, LARGE_ALLOCATION) and mallopt(_M_TRIM_THRESHOLD, HEAP_KEPT)
    )
