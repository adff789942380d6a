"""glibc's allocator set for a training loop on the CPU: freed memory is kept for the next step instead of being
handed back to the kernel and faulted in again.

A training step frees and allocates the same large tensors every step (activations, gradients, the optimizer's
temporaries, oneDNN's reordered copies of convolution weights). glibc serves requests over its mmap threshold with
fresh mappings and unmaps them on free, so each such request costs one page fault per 4 KB, every step. On this
project's 2-core CPU that was 2-7 s of kernel time per step at SD1.5 size; a convolution over 1280 channels faults
in about 115 MB per forward and backward (its weights reordered), and its time doubled once the process held
6 GiB (each fresh page then came from memory the virtual machine had to fault in too). So: no request is mapped
on its own (every one comes from the heap), and the heap's top is never trimmed, with 64 MiB of padding when it
grows. After the first steps a step runs from memory the process already holds (`benchmarks/train_step.py`
applies the same to every variant; the README's training section has the figures). Peak memory does not grow:
the heap is reused at the same high-water mark.

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

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -2, -3, -4
#: glibc refuses thresholds above HEAP_MAX_SIZE / 2: 32 MiB on 64-bit machines. Set too, for the threads' arenas:
#: a request too large for a thread's heap is mapped whatever `M_MMAP_MAX` says.
MMAP_THRESHOLD = 32 * 2**20
#: 0: no request is served by a mapping of its own (the main heap grows instead); larger tensors than the threshold
#: (a 1280-channel 3x3 convolution's weights are 59 MB) would otherwise be mapped and unmapped every step.
MMAP_MAX = 0
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
    tuned = ("MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_MMAP_MAX_" in os.environ
             or "MALLOC_TRIM_THRESHOLD_" in os.environ or "MALLOC_TOP_PAD_" in os.environ
             or "GLIBC_TUNABLES" in os.environ)
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
    settings = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_MMAP_MAX, MMAP_MAX), (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
                (M_TOP_PAD, TOP_PAD))
    return all(mallopt(param, value) == 1 for param, value in settings)
