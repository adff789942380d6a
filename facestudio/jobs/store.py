"""Background jobs on disk: `HOME/jobs/<id>/` is a training run folder (see `facestudio.training.run`) plus a
`job.json` naming it.

The folder is the whole truth: any process (the studio, `python -m facestudio jobs ...` in another terminal, a
restarted studio) reads the same files, so nothing is lost when a process stops. Only the trainer writes the status
of a job while it runs; this module writes it only when no trainer can: when a job is queued, re-queued or
cancelled before it started. What a reader sees (and a dead trainer's verdict) comes from `status.py`.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from facestudio.errors import DatasetError, JobError
from facestudio.files import write_atomic
from facestudio.jobs.lock import jobs_dir
from facestudio.jobs.status import effective_status, settle
from facestudio.text import slugify
from facestudio.training.config import TrainConfig, create_run
from facestudio.training.run import ACTIVE_STATES, RESUMABLE_STATES, RunFolder, RunState, RunStatus

logger = logging.getLogger(__name__)

JOB_NAME = "job.json"
KIND_TRAIN = "train"
#: `YYYYmmdd-HHMMSS-<slug>[-N]`: sortable by time, and only [a-z0-9-], so an id can never leave `HOME/jobs`.
#: Use `fullmatch`: `$` in `match` would let a trailing newline through.
JOB_ID_PATTERN = re.compile(r"[0-9]{8}-[0-9]{6}-[a-z0-9]+(?:-[a-z0-9]+)*")
_MAX_ID_LENGTH = 80
_MAX_SLUG_LENGTH = 32
_LIST_HINT = "`python -m facestudio jobs list` lists them"


def check_job_id(job_id: object) -> str:
    """The id itself when it has the shape of a job id; JobError otherwise (before it gets near a path)."""
    if not isinstance(job_id, str) or len(job_id) > _MAX_ID_LENGTH or not JOB_ID_PATTERN.fullmatch(job_id):
        raise JobError(f"{job_id!r} is not a job id; ids look like 20261121-153012-anna ({_LIST_HINT}).")
    return job_id


def missing_job(job_id: str) -> JobError:
    """The one answer for a job that is not there, or not the asker's (a workspace gives the same words, so another
    user's job cannot be told from a missing one)."""
    return JobError(f"no job {job_id}; {_LIST_HINT}.")


def _slug(name: str) -> str:
    """The name part of a job id (and of its photo folder)."""
    return slugify(name, _MAX_SLUG_LENGTH) or "job"


@dataclass(frozen=True)
class Job:
    """One job: its id, the name a person gave it, when it was submitted, and its run folder."""

    id: str
    name: str
    folder: RunFolder
    created_at: float
    kind: str = KIND_TRAIN
    #: Training processes (`torchrun --nproc_per_node`); 1 trains in one plain process.
    processes: int = 1
    #: The studio user who queued it (`--auth` with per-user workspaces); `None`: the shared workspace's (the
    #: command line's, or a studio without per-user workspaces).
    owner: str | None = None

    def status(self) -> RunStatus:
        """The status as a reader should see it (see `facestudio.jobs.status`); reads only, writes nothing."""
        return effective_status(self.folder)

    def to_dict(self, status: RunStatus | None = None) -> dict:
        status = status or self.status()
        latest = self.folder.latest_checkpoint()
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "created_at": self.created_at,
            "processes": self.processes,
            "owner": self.owner,
            "folder": str(self.folder.root),
            "status": status.to_dict(),
            "checkpoint_step": latest[0] if latest else None,
            "adapter": str(self.folder.adapter_path) if self.folder.adapter_path.is_file() else None,
        }


class JobStore:
    """The jobs of one studio home: submit, list, look up, cancel and re-queue them.

    Args:
        home (`Path`): the studio home (`StudioSettings.home`); jobs live in `home/jobs/<id>/`.
    """

    def __init__(self, home: str | Path):
        self.home = Path(home)
        self.root = jobs_dir(self.home)

    # -- creating and finding ------------------------------------------------------------------------------------

    def submit_training(self, config: TrainConfig, name: str, *, photos: Sequence[Path] = (),
                        photo_folder: Path | None = None, processes: int = 1, owner: str | None = None) -> Job:
        """Queue a training run; a runner (the studio's, or `jobs resume`) starts it when the queue reaches it.

        With `photos` (copied into the job as one person, `JOB/photos/<name>/`) or a `photo_folder` (used where it
        is), the job prepares them into its own `JOB/dataset/` first (`TrainConfig.photos`); `config.dataset` is
        then replaced. Check where the photos come from before (`facestudio.jobs.intake` does). `owner` records
        the studio user it belongs to (see `Job.owner`).
        """
        config.check()
        if owner is not None and (not isinstance(owner, str) or not owner):
            raise JobError(f"The owner of a job must be a user name; got {owner!r}.")
        if not isinstance(processes, int) or processes < 1:
            raise JobError(f"`processes` must be a whole number >= 1; got {processes!r}.", field="processes")
        config.check_processes(processes)
        name = " ".join(str(name).split()) or Path(str(config.dataset)).name or "training"
        created_at = time.time()
        folder = self._reserve_folder(f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(created_at))}-{_slug(name)}")
        try:
            if photos or photo_folder is not None:
                layout = RunFolder(folder)
                config = config.replace(photos=str(photo_folder or layout.photos_dir), dataset=str(layout.dataset_dir))
            run = create_run(folder, config, state=RunState.QUEUED)
            if photos:
                _copy_photos(photos, run.photos_dir / _slug(name))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)  # the folder was made just above; only ours is in it
            raise
        job = Job(id=folder.name, name=name, folder=run, created_at=created_at, processes=processes, owner=owner)
        # job.json goes last: a folder without it is never listed, so no runner picks up a half-made job.
        record = {"id": job.id, "kind": job.kind, "name": name, "created_at": created_at}
        if processes > 1:  # one process is what a job.json without the key means
            record["processes"] = processes
        if owner is not None:
            record["owner"] = owner
        write_atomic(folder / JOB_NAME, (json.dumps(record, indent=2) + "\n").encode("utf-8"))
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
            raise missing_job(job_id)
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
            owner = data.get("owner") if isinstance(data, dict) else None  # not a dict: refused just below
            if owner is not None and (not isinstance(owner, str) or not owner):
                raise TypeError("owner")  # a damaged owner must not make the job anyone's (or everyone's)
            return Job(id=folder.name, name=str(data["name"]), folder=RunFolder(folder),
                       created_at=float(data["created_at"]), kind=str(data.get("kind", KIND_TRAIN)),
                       processes=max(1, int(data.get("processes", 1))), owner=owner)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as err:
            logger.warning("skipping %s: its %s is damaged (%s)", folder, JOB_NAME, type(err).__name__)
            return None

    def next_queued(self) -> Job | None:
        """The oldest queued job (the queue is first come, first served)."""
        queued = [job for job in self.list() if job.status().state == RunState.QUEUED]
        return min(queued, key=lambda job: (job.created_at, job.id)) if queued else None

    # -- status ---------------------------------------------------------------------------------------------------

    def effective_status(self, job: Job) -> RunStatus:
        """`Job.status()`, with an INTERRUPTED verdict written back when no runner is active (see `status.settle`),
        so the job stays interrupted (and resumable) after this process ends."""
        return settle(job.folder, self.home)

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
        """Re-queue a cancelled, failed or interrupted job; the trainer continues from its latest checkpoint (one
        stopped while preparing its photos prepares them again, one whose dataset is complete goes on training)."""
        job = self.get(job_id)
        status = self.effective_status(job)
        if status.state not in RESUMABLE_STATES:
            raise JobError(self._not_resumable(job, status))
        job.folder.clear_cancel()
        latest = job.folder.latest_checkpoint()
        job.folder.write_status(RunStatus(
            state=RunState.QUEUED, stage=status.stage, step=latest[0] if latest else 0, total=status.total,
            loss=status.loss, checkpoint_step=latest[0] if latest else None, created_at=status.created_at))
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


def _copy_photos(photos: Sequence[Path], person: Path) -> None:
    """Numbered copies (two uploads may share a name), in upload order."""
    person.mkdir(parents=True)
    for number, photo in enumerate(photos, start=1):
        photo = Path(photo)
        try:
            shutil.copyfile(photo, person / f"{number:03d}_{photo.name}")
        except OSError as err:
            raise DatasetError(f"The photo {photo.name} cannot be copied into the job ({err.strerror or err}); "
                               "upload it again.") from err
