"""Keep freed heap memory in server processes for the next request (glibc malloc).

A STOW request passes megabytes through the process: the parts of its body,
their batches on the way to the blob store, the parsed headers. glibc's defaults
hand such memory back to the kernel as soon as the free space at the top of the
heap exceeds twice the largest block freed so far (its adaptive thresholds), so
every request touches fresh pages again and pays a page fault for each 4 KiB
(a few microseconds apiece, far more in some virtual machines). Fixed thresholds
keep up to ``trim_threshold`` bytes free at the top of the heap for reuse, and
serve blocks below ``mmap_threshold`` from the heap rather than from a mapping
made and unmade for each one.

Other C libraries (musl, macOS) have no ``mallopt`` with these parameters;
there the call does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import platform

log = logging.getLogger(__name__)

#: ``mallopt`` parameters (glibc ``malloc.h``).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def _glibc() -> ctypes.CDLL | None:
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None


def tune_malloc(trim_threshold: int, mmap_threshold: int) -> bool:
    """Set fixed trim and mmap thresholds; ``False`` where nothing was set.

    A ``trim_threshold`` of 0 leaves glibc's adaptive defaults alone. Forked
    workers inherit the setting, so the supervisor calls this once before it
    forks them.
    """
    if trim_threshold <= 0:
        return False
    libc = _glibc()
    if libc is None:
        return False
    done = bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, trim_threshold)
    )
    if not done:
        log.warning("malloc thresholds not accepted; glibc defaults stay")
    return done
