"""A stand-in for `facestudio.training.train_fact` that keeps the trainer's side of the run-folder contract.

Run as `python fake_trainer.py --resume RUN`. The run's `dataset` picks the behaviour: `fake:ok` (a few quick
steps, then adapter.safetensors and "done"), `fake:slow` (0.2 s per step, to be cancelled or killed), `fake:crash`
(exits with code 1 at step 2 without writing a final status, like an unhandled error), `fake:stubborn` (slow, and
deaf to cancel.request, though it stops on SIGTERM), `fake:deaf` (slow, deaf to both). It checkpoints every
`checkpoint_every` steps and on cancel (cancel.request or SIGTERM), resumes from the latest checkpoint, and appends
one line per start to RUN/trace.jsonl so tests can see where each start began. The standard library and the run
states only, so it starts in milliseconds.
"""

import json
import os
import signal
import sys
import time
from pathlib import Path

from facestudio.training.run import RunState

run = Path(sys.argv[sys.argv.index("--resume") + 1])
config = json.loads((run / "config.json").read_text())
mode, total, every = config["dataset"], config["steps"], config["checkpoint_every"]
pause = 0.02 if mode in ("fake:ok", "fake:crash") else 0.2
reads_requests = mode not in ("fake:stubborn", "fake:deaf")
terminated = False


def on_sigterm(signum, frame):
    global terminated
    terminated = True


signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "fake:deaf" else on_sigterm)


def write_status(**changes):
    path = run / "status.json"
    status = json.loads(path.read_text())
    status.update(changes, updated_at=time.time())
    temporary = path.with_name(".status.fake.tmp")
    temporary.write_text(json.dumps(status))
    os.replace(temporary, path)


def checkpoint(step):
    folder = run / "checkpoints" / f"step-{step}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "state.json").write_text(json.dumps({"step": step}))
    return step


def latest_checkpoint():
    folder = run / "checkpoints"
    steps = [int(p.name[5:]) for p in folder.glob("step-*") if (p / "state.json").is_file()] if folder.is_dir() else []
    return max(steps, default=0)


start = latest_checkpoint()
with open(run / "trace.jsonl", "a") as trace:
    trace.write(json.dumps({"pid": os.getpid(), "from_step": start, "at": time.time()}) + "\n")
print(f"fake trainer {mode}: from step {start}", flush=True)
write_status(state=RunState.RUNNING, pid=os.getpid(), step=start, total=total, started_at=time.time(), finished_at=None,
             error=None)
saved = start or None
for step in range(start + 1, total + 1):
    if terminated or (reads_requests and (run / "cancel.request").exists()):
        write_status(state=RunState.CANCELLING)
        saved = checkpoint(step - 1)
        write_status(state=RunState.CANCELLED, checkpoint_step=saved, finished_at=time.time())
        sys.exit(0)
    time.sleep(pause)
    if mode == "fake:crash" and step == 2:
        print("Traceback (most recent call last):\nRuntimeError: boom", file=sys.stderr, flush=True)
        sys.exit(1)
    loss = 1.0 / step
    with open(run / "metrics.jsonl", "a") as metrics:
        metrics.write(json.dumps({"step": step, "loss": loss}) + "\n")
    if step % every == 0:
        saved = checkpoint(step)
    write_status(step=step, loss=loss, checkpoint_step=saved, seconds_per_step=pause, eta_seconds=pause * (total - step))
(run / "adapter.safetensors").write_bytes(b"fake adapter")
write_status(state=RunState.DONE, finished_at=time.time(), eta_seconds=0.0)
