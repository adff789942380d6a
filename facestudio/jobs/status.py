"""The effective status of a job, and the one place that writes a corrected status back.

While a trainer runs, it alone writes `status.json`. The file cannot say two things by itself: that the trainer's
process is gone (the machine, the studio or a kill stopped it: the job is INTERRUPTED, and resumable from its
last checkpoint), and that a cancel was asked for that the trainer has not reached yet (CANCELLING).
`effective_status` works both out for any reader and writes nothing. Only two verdicts are written back, both here:
`settle` persists INTERRUPTED (so the job stays interrupted after the reader ends), and `settle_exit` records how a
trainer's process ended when it could not say so itself. Either is written only by whoever owns it: the runner
that holds the home's lock, or any reader while no runner is active (an active runner settles its jobs itself).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from facestudio.jobs.lock import runner_active
from facestudio.training.run import ACTIVE_STATES, RunFolder, RunState, RunStatus, pid_alive

#: A trainer writes its pid after it started; allow for the coarse clock of process start times.
_PID_CLOCK_SLACK_SECONDS = 2.0


def trainer_alive(status: RunStatus) -> bool:
    """Whether the process named in `status` is alive and is the one that wrote it: after a reboot pids start
    over, and a stale pid that now belongs to some other process must not hold the queue forever."""
    if not pid_alive(status.pid):
        return False
    import psutil

    try:
        created = psutil.Process(status.pid).create_time()
    except psutil.Error:  # gone since, or not ours to inspect: trust pid_alive
        return pid_alive(status.pid)
    written = status.started_at or status.updated_at
    return created <= written + _PID_CLOCK_SLACK_SECONDS


def effective_status(folder: RunFolder) -> RunStatus:
    """The stored status, corrected for what the file cannot know by itself: a RUNNING/CANCELLING run whose
    process is gone is INTERRUPTED, and a RUNNING run with a pending cancel request is CANCELLING. Reads only.
    A missing or damaged status.json reads as a failed run (`RunFolder.read_status`), never raises."""
    status = folder.read_status()
    if status is None:
        return RunStatus(state=RunState.FAILED, error=f"Its {folder.status_path.name} is missing.")
    if status.state in ACTIVE_STATES and not trainer_alive(status):
        latest = folder.latest_checkpoint()
        step = f"step {latest[0]}" if latest else "the start"
        return replace(status, state=RunState.INTERRUPTED, finished_at=status.updated_at,
                       error=f"the training process (pid {status.pid}) stopped without finishing; resuming continues "
                             f"from {step}.")
    if status.state == RunState.RUNNING and folder.cancel_requested():
        return replace(status, state=RunState.CANCELLING)
    return status


def settle(folder: RunFolder, home: str | Path, *, holds_runner_lock: bool = False) -> RunStatus:
    """`effective_status`, with an INTERRUPTED verdict written back when the caller owns it: it holds the runner
    lock of `home`, or no runner is active there."""
    status = effective_status(folder)
    if status.state == RunState.INTERRUPTED and (holds_runner_lock or not runner_active(home)):
        _write_if_unchanged(folder, status)
    return status


def settle_exit(folder: RunFolder, *, launched_at: float, stopped: bool, exit_error: str) -> RunStatus | None:
    """After the trainer's process ended (called by the runner that started it): the trainer's own final status
    stands; otherwise the verdict is written: CANCELLED when a cancel was asked and a checkpoint exists,
    INTERRUPTED when the runner was `stopped`, else FAILED with `exit_error` (how the process ended). None when the
    job was queued again while its process ended: then it simply runs again."""
    status = folder.read_status() or RunStatus(state=RunState.QUEUED)
    if status.state not in (RunState.QUEUED, *ACTIVE_STATES):
        return status
    if status.state == RunState.QUEUED and status.updated_at > launched_at:
        return None
    latest = folder.latest_checkpoint()
    now = time.time()
    if (folder.cancel_requested() or status.state == RunState.CANCELLING) and latest is not None:
        final = replace(status, state=RunState.CANCELLED, checkpoint_step=latest[0], finished_at=now, error=None)
    elif stopped:
        where = f"step {latest[0]}" if latest else "the start"
        final = replace(status, state=RunState.INTERRUPTED, finished_at=now,
                        error=f"the studio stopped before the training process finished; resuming continues from "
                              f"{where}.")
    else:
        final = replace(status, state=RunState.FAILED, finished_at=now, error=exit_error)
    return folder.write_status(final)


def _write_if_unchanged(folder: RunFolder, corrected: RunStatus) -> None:
    """Write `corrected` unless status.json changed since it was read (a trainer that came back wins)."""
    stored = folder.read_status()
    if stored is not None and stored.state in ACTIVE_STATES and stored.updated_at == corrected.updated_at:
        folder.write_status(corrected)
