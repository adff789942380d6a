"""Seconds from `python app.py --port P` until the web UI answers, and the memory it holds then, against bare Gradio.

Why: the studio promises to open fast and to load no model until the first request (app.py imports nothing heavy at
start). This measures both promises from the outside, the way a user meets them: the wall time from starting the
process until `GET http://127.0.0.1:P/` answers 200, and at that moment the resident set size (RSS, psutil) of the
process and all its children, and whether the torch library is mapped into it (`/proc/<pid>/maps`, Linux only).
The same is measured for a bare Gradio app (one `gr.Blocks` with one Markdown, launched the same way from a
temporary script), so the table separates what Gradio itself costs from what FaceStudio adds.

Runs alternate between the two apps (the order flips each round, so neither always starts with a warmer disk
cache); each runs with FACESTUDIO_HOME set to a fresh temporary folder, FACESTUDIO_OFFLINE=1 and
GRADIO_ANALYTICS_ENABLED=False. Every process started is killed (its whole process group) when measured, on error
and on Ctrl-C. Goal: median start-up under 5 s and no model in memory (no libtorch mapped). Exit status 0 on PASS,
1 on FAIL, 2 when an app did not come up.

    python benchmarks/startup.py [--repeats 3] [--timeout 90]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
GOAL_SECONDS = 5.0
MIB = 1024 * 1024
# Shared-library name fragments that betray a heavy framework loaded at start; torch decides PASS/FAIL, the others
# are reported for information.
HEAVY_LIBRARIES = {
    "torch": ("libtorch", "libc10.so"),
    "onnxruntime": ("onnxruntime_pybind11_state", "libonnxruntime"),
    "mediapipe": ("mediapipe/python/_framework_bindings",),
    "dlib": ("_dlib_pybind11",),
    "cv2": ("cv2/cv2.", "cv2.abi3.so", "cv2.cpython"),
}
BARE_APP = '''\
import argparse

import gradio as gr

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
args = parser.parse_args()
with gr.Blocks(title="bare") as demo:
    gr.Markdown("# Bare Gradio")
demo.queue()
demo.launch(server_name="127.0.0.1", server_port=args.port)
'''


class StartupError(RuntimeError):
    """The app exited or did not answer 200 within the time limit."""


@dataclass
class Sample:
    seconds: float
    rss_mib: float
    processes: int
    libraries: set[str] | None  # None where /proc/<pid>/maps cannot be read (not Linux)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers_200(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def mapped_libraries(processes: list[psutil.Process]) -> set[str] | None:
    """Names from HEAVY_LIBRARIES whose shared objects are mapped into any of `processes`."""
    found: set[str] = set()
    for process in processes:
        try:
            maps = Path(f"/proc/{process.pid}/maps").read_text()
        except FileNotFoundError:
            if process.pid == processes[0].pid:
                return None
            continue
        except (PermissionError, ProcessLookupError):
            continue
        found.update(name for name, fragments in HEAVY_LIBRARIES.items() if any(f in maps for f in fragments))
    return found


def stop(process: subprocess.Popen) -> None:
    """Kill the process group started for `process`: SIGTERM, then SIGKILL after 5 s."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def measure(script: Path, env: dict[str, str], timeout: float, log_dir: Path, tag: str) -> Sample:
    """Start `python script --port P`, wait for GET / to answer 200, sample its memory, kill it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log_path = log_dir / f"{tag}.log"
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, str(script), "--port", str(port)], cwd=REPO, env=env,
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            while True:
                if process.poll() is not None:
                    tail = log_path.read_text(errors="replace")[-2000:]
                    raise StartupError(f"{script.name} exited with status {process.returncode}:\n{tail}")
                if answers_200(url):
                    seconds = time.perf_counter() - started
                    break
                if time.perf_counter() - started > timeout:
                    tail = log_path.read_text(errors="replace")[-2000:]
                    raise StartupError(f"{script.name} did not answer 200 on {url} within {timeout:.0f} s:\n{tail}")
                time.sleep(0.02)
            root = psutil.Process(process.pid)
            processes = [root, *root.children(recursive=True)]
            rss = 0
            for p in processes:
                with contextlib.suppress(psutil.NoSuchProcess):
                    rss += p.memory_info().rss
            return Sample(seconds, rss / MIB, len(processes), mapped_libraries(processes))
        finally:
            stop(process)


def describe(libraries: set[str] | None) -> str:
    if libraries is None:
        return "unknown"
    return ", ".join(sorted(libraries)) or "none"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="launches of each app (default 3)")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for each app to answer")
    parser.add_argument("--app", type=Path, default=REPO / "app.py", help="the app to measure (default app.py)")
    args = parser.parse_args(argv)
    # Turn SIGTERM into SystemExit so the `finally` in measure() still kills the app being measured.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    results: dict[str, list[Sample]] = {"ours": [], "bare": []}
    with tempfile.TemporaryDirectory(prefix="facestudio-startup-") as tmp:
        tmp_dir = Path(tmp)
        bare = tmp_dir / "bare_app.py"
        bare.write_text(BARE_APP)
        scripts = {"ours": args.app.resolve(), "bare": bare}
        try:
            for round_index in range(args.repeats):
                order = ("ours", "bare") if round_index % 2 == 0 else ("bare", "ours")
                for name in order:
                    home = Path(tempfile.mkdtemp(prefix=f"home-{name}-{round_index}-", dir=tmp_dir))
                    env = {**os.environ, "FACESTUDIO_HOME": str(home), "FACESTUDIO_OFFLINE": "1",
                           "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
                    sample = measure(scripts[name], env, args.timeout, tmp_dir, f"{name}-{round_index}")
                    results[name].append(sample)
                    print(f"run {round_index + 1}/{args.repeats} {name:<4}: {sample.seconds:6.2f} s "
                          f"{sample.rss_mib:7.1f} MiB in {sample.processes} process(es); heavy libraries mapped: "
                          f"{describe(sample.libraries)}", flush=True)
        except StartupError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2

    ours_s = statistics.median(s.seconds for s in results["ours"])
    bare_s = statistics.median(s.seconds for s in results["bare"])
    ours_mib = statistics.median(s.rss_mib for s in results["ours"])
    bare_mib = statistics.median(s.rss_mib for s in results["bare"])
    print()
    header = f"{'median of ' + str(args.repeats):<22}{'ours':>10}{'bare gradio':>13}{'ours/bare':>11}"
    print(header)
    print("-" * len(header))
    print(f"{'start-up to 200 (s)':<22}{ours_s:>10.2f}{bare_s:>13.2f}{ours_s / bare_s:>10.2f}x")
    print(f"{'RSS at 200 (MiB)':<22}{ours_mib:>10.1f}{bare_mib:>13.1f}{ours_mib / bare_mib:>10.2f}x")

    maps = [s.libraries for s in results["ours"]]
    if any(m is None for m in maps):
        torch_state = "unknown (no /proc/<pid>/maps)"
        torch_loaded = None
    else:
        torch_loaded = any("torch" in m for m in maps if m is not None)
        torch_state = "yes" if torch_loaded else "no"
    print(f"\ntorch (libtorch) mapped in our app at that point: {torch_state}")
    fast = ours_s < GOAL_SECONDS
    verdict = "PASS" if fast and torch_loaded is False else "FAIL"
    reasons = [f"median start-up {ours_s:.2f} s {'<' if fast else '>='} {GOAL_SECONDS:.0f} s",
               f"libtorch mapped: {torch_state}"]
    print(f"{verdict}: goal 'under {GOAL_SECONDS:.0f} s and no model in memory (no libtorch mapped)' — "
          + "; ".join(reasons))
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
