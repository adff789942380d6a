"""On the CPU the trainer keeps freed memory for the next step: tensors the size of a step's activations come from
the heap (even those over glibc's largest mmap threshold), which keeps them when they are freed (with glibc's
defaults each is a fresh mapping, unmapped on free, so the next step faults every page in again)."""

from __future__ import annotations

import sys

import pytest

from tests.probes import run_probe

PROBE = """
import ctypes, json, sys
import torch
from facestudio.training.cpu_memory import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]

mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
mallinfo2.restype = MallInfo2
applied = keep_freed_memory() if sys.argv[1] == "tuned" else False
# 4 x 24 MiB, as a step's activations, and 2 x 64 MiB, over any mmap threshold glibc allows (as oneDNN's reordered
# weights of a 1280-channel convolution)
tensors = [torch.empty(6 * 2**20).fill_(1) for _ in range(4)] + [torch.empty(16 * 2**20).fill_(1) for _ in range(2)]
mapped = mallinfo2().hblkhd
del tensors
kept = mallinfo2().fordblks
print(json.dumps({"applied": applied, "mapped": mapped, "kept": kept, "again": keep_freed_memory()}))
"""
STEP = (4 * 24 + 2 * 64) * 2**20


glibc_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")


@glibc_only
def test_step_sized_tensors_come_from_the_heap_and_stay_there_when_freed():
    default, tuned = run_probe(PROBE, "default"), run_probe(PROBE, "tuned")
    assert default["mapped"] >= STEP and default["kept"] < STEP  # mapped afresh, unmapped on free
    assert tuned["applied"] is True and tuned["again"] is True
    assert tuned["mapped"] < 24 * 2**20 and tuned["kept"] >= STEP  # heap memory, kept for the next step


@glibc_only
def test_an_allocator_the_user_chose_is_left_alone():
    assert run_probe(PROBE, "tuned", MALLOC_TRIM_THRESHOLD_="1000000")["applied"] is False
