"""The benchmarks' own measuring and reporting (their timings are not tested: timing belongs in benchmarks)."""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stdout
from dataclasses import asdict
from pathlib import Path

import pytest

from benchmarks.train_step import Job, add_ratios, combine_rounds, print_table
from tests.probes import run_probe

MIB = 2**20

# Run in a fresh interpreter (`run_probe`): freed memory must go back to the kernel for the earlier spike to end.
PROBE = """
import json, sys, time
import psutil, torch
from pathlib import Path
from benchmarks.generate import PeakMemory
if sys.argv[1] == "sampler":
    PeakMemory._CLEAR_REFS = Path("/nonexistent/clear_refs")
spike = torch.ones(400 * 2**20 // 4)  # an earlier, larger peak of the same process
del spike
before = psutil.Process().memory_info().rss
with PeakMemory(torch.device("cpu")) as peak:
    block = torch.ones(100 * 2**20 // 4)
    time.sleep(0.05)  # the sampler's period is 5 ms
    del block
print(json.dumps({"peak": peak.peak_bytes, "before": before, "sampled": peak._thread is not None}))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="the kernel's high-water mark is Linux's")
def test_cpu_peak_is_the_blocks_own_not_an_earlier_one():
    measured = run_probe(PROBE, "high-water-mark")
    assert measured["sampled"] is False
    # The block's 100 MiB is seen; the 400 MiB before it is not (the high-water mark was reset on entry).
    assert measured["before"] + 90 * MIB <= measured["peak"] < measured["before"] + 250 * MIB


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc returns the freed spike to the kernel")
def test_cpu_peak_falls_back_to_sampling():
    measured = run_probe(PROBE, "sampler")
    assert measured["sampled"] is True
    assert measured["before"] + 90 * MIB <= measured["peak"] < measured["before"] + 250 * MIB


def _row(variant: str, seconds: float, peak: int, flops: int | None = None, measure_flops: bool = False) -> dict:
    job = Job(variant, "cpu", "no", 256, 1, 1, 2, "models", "dataset", measure_flops)
    row = {**asdict(job), "seconds_per_step": seconds, "step_seconds": [seconds], "peak_bytes": peak}
    if flops is not None:
        row["flops"] = flops
    return row


def test_report_without_flop_counts():
    rows = {"bare": _row("bare", 2.0, 4 * 2**30), "fact": _row("fact", 3.0, 6 * 2**30)}
    add_ratios(rows)
    assert rows["fact"]["time_x_bare"] == pytest.approx(1.5)
    assert rows["fact"]["memory_x_bare"] == pytest.approx(1.5)
    assert "flops_x_bare" not in rows["fact"]
    out = io.StringIO()
    with redirect_stdout(out):
        print_table("header", rows, "peak RSS GiB", 1.0)
    assert "GFLOP" not in out.getvalue()
    assert "1.50x" in out.getvalue()


def test_report_with_flop_counts():
    rows = {"bare": _row("bare", 2.0, 4 * 2**30, 100 * 10**9, True),
            "fact": _row("fact", 3.0, 6 * 2**30, 160 * 10**9, True)}
    add_ratios(rows)
    assert rows["fact"]["flops_x_bare"] == pytest.approx(1.6)
    out = io.StringIO()
    with redirect_stdout(out):
        print_table("header", rows, "peak RSS GiB", 1.0)
    assert "GFLOP/step" in out.getvalue() and "1.60x" in out.getvalue()


def test_rounds_compare_each_variant_with_the_denominator_of_its_own_round():
    # The machine ran twice as fast in the second round: each round's ratio is 1.5x, the pooled times are not.
    rounds = [{"bare": _row("bare", 4.0, 4 * 2**30), "fact": _row("fact", 6.0, 6 * 2**30)},
              {"bare": _row("bare", 2.0, 4 * 2**30), "fact": _row("fact", 3.0, 7 * 2**30)},
              {"bare": _row("bare", 2.2, 4 * 2**30), "fact": {"error": "worker exited with status 1"}}]
    for rows in rounds:
        add_ratios(rows)
    combined = combine_rounds(rounds)
    assert combined["fact"]["time_x_bare"] == pytest.approx(1.5)
    assert combined["fact"]["time_x_bare_range"] == pytest.approx([1.5, 1.5])
    assert combined["fact"]["peak_bytes"] == 7 * 2**30  # the largest of its rounds
    assert len(combined["fact"]["rounds"]) == 2  # the failed round is left out
    assert combined["bare"]["seconds_per_step"] == pytest.approx(2.2)
    out = io.StringIO()
    with redirect_stdout(out):
        print_table("header", combined, "peak RSS GiB", 1.0)
    assert "(1.50-1.50x over 2 rounds)" in out.getvalue()
