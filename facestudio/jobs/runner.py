"""The job runner: queued jobs run one at a time, each in its own process, never in the caller's thread.

Training in its own process keeps the studio responsive and lets the OS free every byte of GPU memory when a run
ends; one job at a time, because two trainings (or a training and the studio's pipelines) do not fit on one GPU.
Exactly one runner per studio home, across processes, is enforced by a file lock (`HOME/jobs/.runner.lock`).

The trainer owns `status.json` while it runs. After the trainer's process has ended without writing a final status
(a crash, a kill), the runner has `status.settle_exit` write the verdict, so the two never write at the same time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import site
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import facestudio
from facestudio.config import StudioSettings
from facestudio.errors import JobError
from facestudio.jobs.lock import acquire_runner_lock
from facestudio.jobs.status import settle, settle_exit
from facestudio.jobs.store import Job, JobStore
from facestudio.training.run import ACTIVE_STATES, RunFolder, RunState, RunStatus

logger = logging.getLogger(__name__)

_LOG_HEADER = "=== "
#: How long a trainer gets to exit after SIGTERM before it is killed.
_KILL_AFTER_SECONDS = 10.0

UpdateCallback = Callable[[Job, RunStatus], None]


def trainer_pythonpath() -> str | None:
    """What the trainer's PYTHONPATH needs so `-m facestudio...` imports this same package from any working folder:
    the folder holding the imported `facestudio` (a checkout, or a `pip install --target` folder), or nothing when
    that is a site-packages folder the interpreter searches anyway (an installed package; on PYTHONPATH it would
    come before the standard library)."""
    parent = Path(facestudio.__file__).resolve().parent.parent
    searched = {Path(folder).resolve() for folder in (*site.getsitepackages(), site.getusersitepackages())}
    return None if parent in searched else str(parent)


def visible_gpu_count() -> int:
    """CUDA GPUs a job could train on, one process each. Without loading torch when the studio has not yet (its
    start-up stays fast): the NVIDIA driver's list of GPUs, limited by CUDA_VISIBLE_DEVICES."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    try:
        count = len([entry for entry in Path("/proc/driver/nvidia/gpus").iterdir() if entry.is_dir()])
    except OSError:
        return 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        count = min(count, len([part for part in visible.split(",") if part.strip() and part.strip() != "-1"]))
    return count


def trainer_command(run_root: Path, processes: int = 1) -> list[str]:
    """The trainer, continuing (or starting) the run in `run_root` (see `facestudio.training.train_fact`); on
    several processes through torchrun (one machine, `--standalone`: it picks a free rendezvous port)."""
    trainer = ["-m", "facestudio.training.train_fact", "--resume", str(run_root)]
    if processes == 1:
        return [sys.executable, *trainer]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
            *trainer]


class JobRunner:
    """Runs the queue of a `JobStore`: in a background thread (`start`/`stop`, the studio) or in the calling
    thread until the queue is empty (`run_until_idle`, the command line).

    Args:
        store (`JobStore`): the jobs to run.
        command_for (`Callable[[Path], list[str]]`, *optional*, defaults to `trainer_command`): the command that
            trains the run in a folder; tests pass a small fake trainer.
        before_start (`Callable[[], None]`, *optional*): called before each job starts; the studio passes its model
            manager's `unload` so the trainer finds the GPU free.
        poll_seconds (`float`, *optional*, defaults to 0.5): how often a running job's status is read.
        on_update (`Callable[[Job, RunStatus], None]`, *optional*): called when a job's state or step changes.
        settings (`StudioSettings`, *optional*, defaults to the defaults with the store's home): the studio's
            settings; the trainer is an entry point of its own and gets them through its environment (`to_env`).
    """

    def __init__(self, store: JobStore, command_for: Callable[..., list[str]] | None = None,
                 before_start: Callable[[], None] | None = None, poll_seconds: float = 0.5,
                 on_update: UpdateCallback | None = None, settings: StudioSettings | None = None):
        if poll_seconds <= 0:
            raise ValueError(f"`poll_seconds` must be > 0; got {poll_seconds}.")
        settings = settings if settings is not None else StudioSettings(home=store.home)
        if Path(settings.home).resolve() != Path(store.home).resolve():
            raise ValueError(f"The settings' home {settings.home} is not the job store's home {store.home}.")
        self.settings = settings
        self.store = store
        self.command_for = command_for or trainer_command
        self.before_start = before_start
        self.poll_seconds = poll_seconds
        self.on_update = on_update
        self._lock = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._detach = False
        self._guard = threading.Lock()  # protects _current/_process, read by stop() from another thread
        self._current: Job | None = None
        self._process: subprocess.Popen | None = None
        self._waiting_for: str | None = None
        self._seen: tuple | None = None  # the (state, step) last passed to on_update

    @property
    def current(self) -> Job | None:
        """The job whose trainer this runner has started and is waiting for, if any."""
        with self._guard:
            return self._current

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- lifecycle ------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Run the queue in a daemon thread until `stop()`. JobError when another runner has this home."""
        if self.running:
            raise JobError("this job runner is already running.")
        self._acquire()
        self._stop.clear()
        self._detach = False
        self._thread = threading.Thread(target=self._loop, name="facestudio-jobs", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look at the queue now rather than at the next poll (after a submit or a resume)."""
        self._wake.set()

    def stop(self, cancel_running: bool = True, timeout_seconds: float = 60.0) -> None:
        """Stop the background thread and release the home.

        With `cancel_running` the running job is asked to cancel (it checkpoints and stops at its next step);
        after `timeout_seconds` it gets SIGTERM, then SIGKILL. Without it, the trainer keeps going on its own
        and a later runner waits for it before starting the next job.
        """
        self._detach = not cancel_running
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            # The thread itself asks the running job to cancel (see `_wait`), so a job it is launching right now
            # is cancelled too; here we only wait, then end the trainer if it does not stop in time.
            thread.join(timeout=timeout_seconds + 2 * self.poll_seconds)
            with self._guard:
                job, process = self._current, self._process
            if thread.is_alive() and process is not None:
                logger.warning("job %s did not stop within %g s of the cancel request; terminating it",
                               job.id if job is not None else "?", timeout_seconds)
                _end_process(process)
                thread.join(timeout=4 * self.poll_seconds + 5)
            if thread.is_alive():
                logger.warning("the job runner thread did not stop; it is a daemon and ends with the process")
            self._thread = None
        self._release()

    def run_until_idle(self) -> list[Job]:
        """Run queued jobs in this thread until none is left; return the jobs it took from the queue, in order.

        Ctrl-C asks the running job to cancel and waits for its checkpoint (a second Ctrl-C kills it), then
        re-raises KeyboardInterrupt.
        """
        if self.running:
            raise JobError("this job runner is already running in the background.")
        self._acquire()
        ran: list[Job] = []
        try:
            while True:
                picked = self._pick()
                if isinstance(picked, Job):
                    self._run_job(picked, foreground=True)
                    ran.append(picked)
                elif picked is None:
                    return ran
                else:
                    time.sleep(self.poll_seconds)
        finally:
            self._release()

    def _acquire(self) -> None:
        self._lock = acquire_runner_lock(self.store.home)

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- the queue ------------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                picked = self._pick()
                if isinstance(picked, Job):
                    self._run_job(picked, foreground=False)
                    continue
            except Exception:  # the studio's runner must outlive one bad job folder; the error is in the log
                logger.exception("the job runner hit an unexpected error; it carries on")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def _pick(self) -> Job | str | None:
        """The next job to run (`JobStore.next_queued`); None when the queue is empty; "busy" while a trainer that
        an earlier runner left behind (`stop(cancel_running=False)`, a crashed studio) still works: one job at a
        time, always. Settles every job on the way: this runner holds the lock, so the verdict on a trainer that
        died is its to write."""
        for job in self.store.list():
            status = settle(job.folder, self.store.home, holds_runner_lock=True)
            if status.state in ACTIVE_STATES:
                if self._waiting_for != job.id:
                    logger.warning("waiting for job %s (pid %s), started earlier, to finish", job.id, status.pid)
                    self._waiting_for = job.id
                return "busy"
        self._waiting_for = None
        return self.store.next_queued()

    def _run_job(self, job: Job, *, foreground: bool) -> None:
        folder = job.folder
        self._seen = None
        if folder.cancel_requested():  # cancelled while queued; the canceller's status write may still be on its way
            self._write_final(job, replace(_stored(folder), state=RunState.CANCELLED, finished_at=time.time()))
            return
        if self.before_start is not None:
            try:
                self.before_start()
            except Exception as err:
                logger.exception("freeing the GPU before job %s failed", job.id)
                self._write_final(job, replace(_stored(folder), state=RunState.FAILED, finished_at=time.time(),
                                               error=f"the studio could not free the GPU before training ({err})."))
                return
        if self._stop.is_set():  # stop() came while the GPU was being freed: the job stays queued
            return
        # A job on several processes asks for them; a one-process command_for (tests' fakes) is called as before.
        parts = self.command_for(folder.root, job.processes) if job.processes > 1 else self.command_for(folder.root)
        command = [str(part) for part in parts]
        launched_at = time.time()
        process = self._launch(job, command)
        if process is None:
            return
        with self._guard:
            self._current, self._process = job, process
        try:
            try:
                returncode = self._wait(job, process)
            except KeyboardInterrupt:
                if not foreground:
                    raise
                returncode = self._cancel_after_ctrl_c(job, process)
                self._settle(job, returncode, launched_at, stopped=True)
                raise
            if returncode is None:  # stop(cancel_running=False): the trainer carries on without us
                logger.info("left job %s running in process %s", job.id, process.pid)
                return
            self._settle(job, returncode, launched_at, stopped=self._stop.is_set())
        finally:
            with self._guard:
                self._current = self._process = None

    def _launch(self, job: Job, command: list[str]) -> subprocess.Popen | None:
        folder = job.folder
        env = {**os.environ, **self.settings.to_env()}  # the trainer reads the studio's settings, not its own guess
        env["PYTHONPATH"] = os.pathsep.join(p for p in (trainer_pythonpath(), env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"  # train.log shows each line as it is written
        # Its own session: Ctrl-C in a terminal or the studio's signals do not reach the trainer; only a cancel does.
        session: dict[str, Any]
        if sys.platform == "win32":
            session = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
        else:
            session = {"start_new_session": True}
        logger.info("starting job %s: %s", job.id, shlex.join(command))
        try:
            with open(folder.log_path, "ab") as log:
                log.write(f"\n{_LOG_HEADER}{time.strftime('%Y-%m-%d %H:%M:%S')} job {job.id}: "
                          f"{shlex.join(command)}\n".encode())
                log.flush()
                return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        env=env, **session)
        except OSError as err:
            self._write_final(job, replace(_stored(folder), state=RunState.FAILED, finished_at=time.time(),
                                           error=f"the training process could not be started ({err})."))
            return None

    def _wait(self, job: Job, process: subprocess.Popen) -> int | None:
        """The trainer's exit code; None when `stop(cancel_running=False)` lets it go on alone."""
        while True:
            try:
                return process.wait(timeout=self.poll_seconds)
            except subprocess.TimeoutExpired:
                pass
            if self._stop.is_set():
                if self._detach:
                    return None
                if not job.folder.cancel_requested():
                    job.folder.request_cancel()
            self._notify(job)

    def _cancel_after_ctrl_c(self, job: Job, process: subprocess.Popen) -> int:
        logger.warning("cancelling job %s: it saves a checkpoint first (Ctrl-C again ends it at once, losing the "
                       "steps since its last checkpoint)", job.id)
        job.folder.request_cancel()
        try:
            return process.wait()
        except KeyboardInterrupt:
            _signal(process, signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
            return process.wait()

    def _settle(self, job: Job, returncode: int, launched_at: float, *, stopped: bool) -> None:
        """After the trainer exits: its own final status stands, or `settle_exit` writes what happened."""
        final = settle_exit(job.folder, launched_at=launched_at, stopped=stopped,
                            exit_error=_exit_message(returncode, job.folder))
        if final is None:
            logger.info("job %s was re-queued while its process ended; it runs again", job.id)
            return
        # info, not warning: the status (shown by the UI and `jobs`) is where a person reads what happened.
        logger.info("job %s ended: %s%s", job.id, final.state, f": {final.error}" if final.error else "")
        self._notify(job)

    def _write_final(self, job: Job, status: RunStatus) -> None:
        job.folder.write_status(status)
        # info, not warning: the status (shown by the UI and `jobs`) is where a person reads what happened.
        logger.info("job %s %s%s", job.id, status.state, f": {status.error}" if status.error else "")
        self._notify(job)

    def _notify(self, job: Job) -> None:
        """Call `on_update` when the job's state or step moved since the last call."""
        if self.on_update is None:
            return
        status = job.status()
        if (status.state, status.step) != self._seen:
            self._seen = (status.state, status.step)
            try:
                self.on_update(job, status)
            except Exception:
                logger.exception("the job progress callback failed")


def _stored(folder: RunFolder) -> RunStatus:
    return folder.read_status() or RunStatus(state=RunState.QUEUED)


def _exit_message(returncode: int, folder: RunFolder) -> str:
    if returncode < 0:
        try:
            how = f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"was killed by signal {-returncode}"
    else:
        how = f"exited with code {returncode}"
    last = _last_log_line(folder.log_path)
    said = f" (its last log line: {last!r})" if last else ""
    return f"the training process {how} without finishing{said}; see {folder.log_path}."


def _last_log_line(path: Path, max_chars: int = 200) -> str | None:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - 8192))
            lines = handle.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        line = line.strip()
        if line and not line.startswith(_LOG_HEADER):
            return line[:max_chars]
    return None


def _wait_exit(process: subprocess.Popen, timeout_seconds: float) -> bool:
    deadline = time.monotonic() + timeout_seconds
    while process.poll() is None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _end_process(process: subprocess.Popen) -> None:
    """SIGTERM (the trainer checkpoints on it, like a cancel), then SIGKILL if it does not exit in time."""
    _signal(process, signal.SIGTERM)
    if not _wait_exit(process, _KILL_AFTER_SECONDS):
        _signal(process, signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
        _wait_exit(process, _KILL_AFTER_SECONDS)


def _signal(process: subprocess.Popen, signum: int) -> None:
    """Signal the trainer's whole process group (an `accelerate launch` has worker children)."""
    if sys.platform == "win32":
        process.terminate()
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(process.pid, signum)
