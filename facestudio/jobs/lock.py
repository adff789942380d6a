"""One job runner per studio home, across processes: a file lock in `HOME/jobs/.runner.lock`.

The studio's runner, `jobs run` and `jobs resume` each take it before they start a job; `runner_active` lets any
other process ask whether someone works the queue (and so owns the verdicts on its jobs, see `status.py`).
"""

from __future__ import annotations

from pathlib import Path

from facestudio.errors import JobError

JOBS_DIR = "jobs"
RUNNER_LOCK_NAME = ".runner.lock"


def jobs_dir(home: str | Path) -> Path:
    return Path(home) / JOBS_DIR


def runner_lock_path(home: str | Path) -> Path:
    return jobs_dir(home) / RUNNER_LOCK_NAME


def runner_active(home: str | Path) -> bool:
    """Whether some process (this one included) holds the job-runner lock of `home`, i.e. runs its queue."""
    from filelock import FileLock, Timeout

    path = runner_lock_path(home)
    if not path.exists():
        return False
    probe = FileLock(path, timeout=0, thread_local=False)
    try:
        probe.acquire()
    except Timeout:
        return True
    except OSError:  # a read-only home: nobody can run jobs there
        return False
    probe.release()
    return False


def acquire_runner_lock(home: str | Path):
    """The held `FileLock` of `home`'s queue (release it when done); `JobError` when another runner has it."""
    from filelock import FileLock, Timeout

    path = runner_lock_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        raise JobError(f"another FaceStudio process (the studio, or `jobs resume` in another terminal) is already "
                       f"running the jobs in {jobs_dir(home)}; it starts queued jobs itself.") from None
    return lock
