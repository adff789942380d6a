"""glibc's allocator set for a training loop on the CPU: freed memory is kept for the next step instead of being
handed back to the kernel and faulted in again.

A training step frees and allocates the same large tensors every step (activations, gradients, the optimizer's
temporaries). glibc serves requests over its mmap threshold with fresh mappings and unmaps them on free; its
dynamic threshold then rises to the size just freed, but a request of exactly that size is mapped again. Each
fresh mapping costs one page fault per 4 KB, and on this project's 2-core CPU that was 2-7 s of kernel time per
step at SD1.5 size. With the threshold at glibc's largest (32 MiB) and freed memory kept at the top of the heap,
those faults disappear after the first steps (`benchmarks/train_step.py` applies the same to every variant; the
README's training section has the figures). Peak memory does not grow: the heap is reused at the same high-water
mark.

Nothing is changed where the user chose an allocator themselves (a `MALLOC_*` tunable in the environment, or
jemalloc/tcmalloc preloaded), or where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

logger = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
#: glibc refuses thresholds above HEAP_MAX_SIZE / 2: 32 MiB on 64-bit machines.
MMAP_THRESHOLD = 32 * 2**20
#: -1: the top of the heap is never given back (glibc's documented value; a step can free more than the 2 GiB that
#: the largest positive value of `mallopt`'s int would allow).
TRIM_THRESHOLD = -1
TOP_PAD = 64 * 2**20

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Set glibc's allocator for training (once per process); True when it is set, False where it was left alone."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    preloaded = os.environ.get("LD_PRELOAD", "")
    tuned = ("MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ
             or "MALLOC_TOP_PAD_" in os.environ or "GLIBC_TUNABLES" in os.environ)
    if tuned or "jemalloc" in preloaded or "tcmalloc" in preloaded:
        logger.debug("Allocator left as configured (MALLOC_* tunables or a preloaded allocator).")
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018  (glibc only: musl has no mallopt tunables worth setting)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    settings = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD))
    return all(mallopt(param, value) == 1 for param, value in settings)
