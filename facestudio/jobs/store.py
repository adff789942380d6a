"""Background jobs on disk: `HOME/jobs/<id>/` is a training run folder (see `facestudio.training.run`) plus a
`job.json` naming it.

The folder is the whole truth: any process (the studio, `python -m facestudio jobs ...` in another terminal, a
restarted studio) reads the same files, so nothing is lost when a process stops. Only the trainer writes the status
of a job while it runs; this module writes it only when no trainer can: when a job is queued, re-queued, cancelled
before it started, or found with a dead trainer process.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

from facestudio.errors import JobError
from facestudio.files import write_atomic
from facestudio.training.config import TrainConfig, create_run
from facestudio.training.run import (
    ACTIVE_STATES,
    RESUMABLE_STATES,
    RunFolder,
    RunState,
    RunStatus,
    pid_alive,
)

logger = logging.getLogger(__name__)

JOBS_DIR = "jobs"
JOB_NAME = "job.json"
RUNNER_LOCK_NAME = ".runner.lock"
KIND_TRAIN = "train"
#: `YYYYmmdd-HHMMSS-<slug>[-N]`: sortable by time, and only [a-z0-9-], so an id can never leave `HOME/jobs`.
#: Use `fullmatch`: `$` in `match` would let a trailing newline through.
JOB_ID_PATTERN = re.compile(r"[0-9]{8}-[0-9]{6}-[a-z0-9]+(?:-[a-z0-9]+)*")
_MAX_ID_LENGTH = 80
_MAX_SLUG_LENGTH = 32
#: A trainer writes its pid after it started; allow for the coarse clock of process start times.
_PID_CLOCK_SLACK_SECONDS = 2.0
_LIST_HINT = "`python -m facestudio jobs list` lists them"


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


def check_job_id(job_id: object) -> str:
    """The id itself when it has the shape of a job id; JobError otherwise (before it gets near a path)."""
    if not isinstance(job_id, str) or len(job_id) > _MAX_ID_LENGTH or not JOB_ID_PATTERN.fullmatch(job_id):
        raise JobError(f"{job_id!r} is not a job id; ids look like 20261121-153012-anna ({_LIST_HINT}).")
    return job_id


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:_MAX_SLUG_LENGTH].strip("-")
    return slug or "job"


@dataclass(frozen=True)
class Job:
    """One job: its id, the name a person gave it, when it was submitted, and its run folder."""

    id: str
    name: str
    folder: RunFolder
    created_at: float
    kind: str = KIND_TRAIN

    def status(self) -> RunStatus:
        """The status as a reader should see it (see `effective_status`); reads only, writes nothing."""
        return effective_view(self.folder)

    def to_dict(self, status: RunStatus | None = None) -> dict:
        status = status or self.status()
        latest = self.folder.latest_checkpoint()
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "created_at": self.created_at,
            "folder": str(self.folder.root),
            "status": status.to_dict(),
            "checkpoint_step": latest[0] if latest else None,
            "adapter": str(self.folder.adapter_path) if self.folder.adapter_path.is_file() else None,
        }


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


def effective_view(folder: RunFolder) -> RunStatus:
    """The stored status, corrected for what the file cannot know by itself: a RUNNING/CANCELLING run whose
    process is gone is INTERRUPTED (the machine or the studio stopped under it), and a RUNNING run with a pending
    cancel request is CANCELLING (the trainer has not reached its next step yet)."""
    status = folder.read_status()
    if status is None:
        return RunStatus(state=RunState.FAILED, error=f"{folder.status_path} is missing.")
    if status.state in ACTIVE_STATES and not trainer_alive(status):
        latest = folder.latest_checkpoint()
        step = f"step {latest[0]}" if latest else "the start"
        return replace(status, state=RunState.INTERRUPTED, finished_at=status.updated_at,
                       error=f"the training process (pid {status.pid}) stopped without finishing; resuming continues "
                             f"from {step}.")
    if status.state == RunState.RUNNING and folder.cancel_requested():
        return replace(status, state=RunState.CANCELLING)
    return status


class JobStore:
    """The jobs of one studio home: submit, list, look up, cancel and re-queue them.

    Args:
        home (`Path`): the studio home (`facestudio.engine.settings.studio_home()`); jobs live in `home/jobs/<id>/`.
    """

    def __init__(self, home: str | Path):
        self.home = Path(home)
        self.root = jobs_dir(self.home)

    # -- creating and finding ------------------------------------------------------------------------------------

    def submit_training(self, config: TrainConfig, name: str) -> Job:
        """Queue a training run; a runner (the studio's, or `jobs resume`) starts it when the queue reaches it."""
        config.check()
        name = " ".join(str(name).split()) or Path(str(config.dataset)).name or "training"
        created_at = time.time()
        folder = self._reserve_folder(f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(created_at))}-{slugify(name)}")
        try:
            run = create_run(folder, config, state=RunState.QUEUED)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)  # the folder was made just above; nothing else is in it
            raise
        job = Job(id=folder.name, name=name, folder=run, created_at=created_at)
        # job.json goes last: a folder without it is never listed, so no runner picks up a half-made job.
        write_atomic(folder / JOB_NAME, (json.dumps({"id": job.id, "kind": job.kind, "name": name,
                                                     "created_at": created_at}, indent=2) + "\n").encode("utf-8"))
        logger.info("queued job %s (%s)", job.id, name)
        return job

    def _reserve_folder(self, base: str) -> Path:
        """mkdir is the one atomic step: two processes submitting in the same second get different folders."""
        self.root.mkdir(parents=True, exist_ok=True)
        for counter in range(1, 1000):
            candidate = self.root / (base if counter == 1 else f"{base}-{counter}")
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            return candidate
        raise JobError(f"{self.root} already holds 999 jobs named {base}; choose another job name.")

    def get(self, job_id: str) -> Job:
        check_job_id(job_id)
        job = self._load(self.root / job_id)
        if job is None:
            raise JobError(f"no job {job_id}; {_LIST_HINT}.")
        return job

    def list(self) -> list[Job]:
        """Every job, newest first."""
        if not self.root.is_dir():
            return []
        jobs = []
        for entry in self.root.iterdir():
            if JOB_ID_PATTERN.fullmatch(entry.name) and (job := self._load(entry)) is not None:
                jobs.append(job)
        return sorted(jobs, key=lambda job: (job.created_at, job.id), reverse=True)

    def _load(self, folder: Path) -> Job | None:
        try:
            data = json.loads((folder / JOB_NAME).read_text(encoding="utf-8"))
            return Job(id=folder.name, name=str(data["name"]), folder=RunFolder(folder),
                       created_at=float(data["created_at"]), kind=str(data.get("kind", KIND_TRAIN)))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as err:
            logger.warning("skipping %s: its %s is unreadable (%s)", folder, JOB_NAME, err)
            return None

    def next_queued(self) -> Job | None:
        """The oldest queued job (the queue is first come, first served)."""
        queued = [job for job in self.list() if job.status().state == RunState.QUEUED]
        return min(queued, key=lambda job: (job.created_at, job.id)) if queued else None

    # -- status ---------------------------------------------------------------------------------------------------

    def effective_status(self, job: Job) -> RunStatus:
        """`Job.status()`, and an INTERRUPTED verdict is written back when no runner is active, so the job stays
        interrupted (and resumable) after this process ends. With a runner active the runner owns that verdict:
        it is about to settle the job itself."""
        status = job.status()
        if status.state == RunState.INTERRUPTED:
            stored = job.folder.read_status()
            if stored is not None and stored.state in ACTIVE_STATES and not runner_active(self.home):
                again = job.folder.read_status()
                if again is not None and again.updated_at == stored.updated_at:
                    job.folder.write_status(status)
        return status

    def cancel(self, job_id: str) -> RunStatus:
        """A queued job is cancelled at once; a running one is asked to stop (it checkpoints at its next step)."""
        job = self.get(job_id)
        status = self.effective_status(job)
        if status.state == RunState.QUEUED:
            # The request file too: should a runner be launching this job right now, the trainer sees it and stops.
            job.folder.request_cancel()
            return job.folder.write_status(replace(status, state=RunState.CANCELLED, finished_at=time.time(),
                                                   pid=None))
        if status.state in ACTIVE_STATES:
            job.folder.request_cancel()
            # The trainer owns status.json while it runs; the view reports CANCELLING until it writes CANCELLED.
            return job.status()
        hint = f"; `python -m facestudio jobs resume {job.id}` continues it" if status.state in RESUMABLE_STATES else ""
        raise JobError(f"job {job.id} has already ended ({status.state}); there is nothing to cancel{hint}.")

    def resume(self, job_id: str) -> Job:
        """Re-queue a cancelled, failed or interrupted job; the trainer continues from its latest checkpoint."""
        job = self.get(job_id)
        status = self.effective_status(job)
        if status.state not in RESUMABLE_STATES:
            raise JobError(self._not_resumable(job, status))
        job.folder.clear_cancel()
        latest = job.folder.latest_checkpoint()
        job.folder.write_status(RunStatus(
            state=RunState.QUEUED, step=latest[0] if latest else 0, total=status.total, loss=status.loss,
            checkpoint_step=latest[0] if latest else None, created_at=status.created_at))
        logger.info("re-queued job %s", job.id)
        return job

    @staticmethod
    def _not_resumable(job: Job, status: RunStatus) -> str:
        if status.state == RunState.DONE:
            return f"job {job.id} is done; its adapter is at {job.folder.adapter_path}."
        if status.state == RunState.QUEUED:
            return f"job {job.id} is already queued; it starts when the jobs before it have finished."
        if status.state == RunState.CANCELLING:
            return f"job {job.id} is stopping; resume it once it shows as cancelled."
        return f"job {job.id} is {status.state}; cancel it first, or wait for it to finish."
