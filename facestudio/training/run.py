"""A training run on disk: the one contract between the trainer, the job runner, the command line and the UI.

    RUN/
      config.json          the run's `TrainConfig` (written once, when the run is created)
      status.json          `RunStatus`: state, stage, step/total, ETA, last loss, error (atomic rewrites)
      photos/              a job's uploaded photos, when it starts from photos (`TrainConfig.photos`)
      dataset/             the dataset the run prepares from them, its first stage (complete once it has a manifest)
      prepare.json         the photo report of that stage: each photo kept or rejected, with the reason
      metrics.jsonl        one JSON line per optimizer step: step, loss, mse, fair, lr, seconds_per_step
      checkpoints/step-N/  adapter, optimizer, scheduler, RNG states and data position (see `checkpoint.py`)
      samples/             step-N_seed-S.png at fixed seeds every `sample_every` steps
      adapter.safetensors  the trained adapter in the released layout (exists only for a finished run)
      train.log            the trainer's log, when it runs as a job
      cancel.request       present while a cancel is asked for; the trainer checkpoints and stops at the next step

Every file is written atomically (temporary file, then rename), so a reader in another process sees a whole
file or the previous one. Nothing here imports torch: the UI and `jobs list` read runs without loading it.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from pathlib import Path

from facestudio.errors import TrainingError
from facestudio.files import write_atomic

CONFIG_NAME = "config.json"
STATUS_NAME = "status.json"
METRICS_NAME = "metrics.jsonl"
CHECKPOINTS_DIR = "checkpoints"
SAMPLES_DIR = "samples"
ADAPTER_NAME = "adapter.safetensors"
LOG_NAME = "train.log"
CANCEL_NAME = "cancel.request"
PHOTOS_DIR = "photos"
DATASET_DIR = "dataset"
PREPARE_REPORT_NAME = "prepare.json"
CHECKPOINT_PREFIX = "step-"
#: A checkpoint folder is complete only once this file is in it (it is written last, then the folder is renamed).
CHECKPOINT_DONE_NAME = "state.json"


class RunState(str, Enum):
    """A run's state, spelled in status.json as its value. A `str`, so `json` writes it as it always was."""

    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    FAILED = "failed"
    DONE = "done"
    #: The run's process is gone without saying how it ended (never written by the trainer; see `facestudio.jobs`).
    INTERRUPTED = "interrupted"

    def __str__(self) -> str:
        return self.value


class RunStage(str, Enum):
    """What a run does (or does next): prepare its photos into a dataset, or train. `step`/`total` count photos
    while preparing and optimizer steps while training."""

    PREPARING = "preparing"
    TRAINING = "training"

    def __str__(self) -> str:
        return self.value


#: States in which no process works on the run.
FINISHED_STATES = frozenset((RunState.CANCELLED, RunState.FAILED, RunState.DONE, RunState.INTERRUPTED))
#: States a run can be resumed from.
RESUMABLE_STATES = frozenset((RunState.CANCELLED, RunState.FAILED, RunState.INTERRUPTED))
#: States in which a process is (or should be) working on the run.
ACTIVE_STATES = frozenset((RunState.RUNNING, RunState.CANCELLING))

_CHECKPOINT_RE = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")


@dataclass
class RunStatus:
    """What `status.json` says. `stage` is what the run does or does next (None: a run from before stages, which
    trains); `step`/`total` count in that stage's unit (photos, or optimizer steps; `total` is 0 while the photos
    are not counted yet). `eta_seconds` and `seconds_per_step` are estimates from the steps run so far;
    `checkpoint_step` is the last complete checkpoint; `error` is one sentence for a failed run."""

    state: RunState = RunState.QUEUED
    stage: RunStage | None = None
    step: int = 0
    total: int = 0
    loss: float | None = None
    seconds_per_step: float | None = None
    eta_seconds: float | None = None
    checkpoint_step: int | None = None
    error: str | None = None
    pid: int | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float = field(default_factory=time.time)

    def __post_init__(self):
        # ValueError for a state or stage this FaceStudio does not know (`read_status` reads it as a failed run).
        self.state = RunState(self.state)
        self.stage = None if self.stage is None else RunStage(self.stage)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(state=self.state.value, stage=None if self.stage is None else self.stage.value)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> RunStatus:
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        for key, value in values.items():  # every field type-checked: a damaged file is one failed run, not a crash
            if key in _NUMBERS and value is not None and not _number(value, whole=key in _WHOLE):
                raise ValueError(f"{key} is {type(value).__name__}, not a number")
            if key == "error" and value is not None and not isinstance(value, str):
                raise ValueError("error is not text")
        if isinstance(values.get("pid"), int) and values["pid"] <= 0:
            values["pid"] = None  # never a process group or "every process"
        return cls(**values)

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total) if self.total else 0.0


@dataclass(frozen=True)
class RunFolder:
    """Paths and small reads/writes of one run folder (see the module docstring)."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def status_path(self) -> Path:
        return self.root / STATUS_NAME

    @property
    def metrics_path(self) -> Path:
        return self.root / METRICS_NAME

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / CHECKPOINTS_DIR

    @property
    def samples_dir(self) -> Path:
        return self.root / SAMPLES_DIR

    @property
    def adapter_path(self) -> Path:
        return self.root / ADAPTER_NAME

    @property
    def log_path(self) -> Path:
        return self.root / LOG_NAME

    @property
    def cancel_path(self) -> Path:
        return self.root / CANCEL_NAME

    @property
    def photos_dir(self) -> Path:
        return self.root / PHOTOS_DIR

    @property
    def dataset_dir(self) -> Path:
        return self.root / DATASET_DIR

    @property
    def prepare_report_path(self) -> Path:
        return self.root / PREPARE_REPORT_NAME

    def exists(self) -> bool:
        """A folder is a run once its config is written."""
        return self.config_path.is_file()

    # -- status ---------------------------------------------------------------------------------------------------

    def read_status(self) -> RunStatus | None:
        """The run's status, or None when there is none yet. A damaged file reads as a failed run, never raises."""
        try:
            data = json.loads(self.status_path.read_text(encoding="utf-8"))
            return RunStatus.from_dict(data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, RecursionError) as err:
            return RunStatus(state=RunState.FAILED, error=f"Its {STATUS_NAME} is damaged ({err}).")

    def write_status(self, status: RunStatus) -> RunStatus:
        status.updated_at = time.time()
        write_atomic(self.status_path, (json.dumps(status.to_dict(), indent=2) + "\n").encode("utf-8"))
        return status

    # -- the photo report of the preparing stage ----------------------------------------------------------------------

    def read_prepare_report(self) -> dict | None:
        """`prepare.json` (`complete` is False while photos are still being checked), or None when there is none
        or it cannot be read."""
        try:
            data = json.loads(self.prepare_report_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def write_prepare_report(self, report: dict) -> None:
        write_atomic(self.prepare_report_path,
                     (json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))

    # -- cancel requests (a file, so any process can ask: the UI, `jobs cancel`, a second terminal) ----------------

    def request_cancel(self) -> None:
        write_atomic(self.cancel_path, f"{time.time()}\n".encode())

    def cancel_requested(self) -> bool:
        return self.cancel_path.exists()

    def clear_cancel(self) -> None:
        self.cancel_path.unlink(missing_ok=True)

    # -- config ---------------------------------------------------------------------------------------------------

    def read_config_dict(self) -> dict:
        try:
            data = json.loads(self.config_path.read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise TrainingError(f"{self.root} is not a training run (it has no {CONFIG_NAME}).") from err
        except (OSError, ValueError) as err:
            raise TrainingError(f"{self.config_path} cannot be read as JSON ({err}).") from err
        if not isinstance(data, dict):
            raise TrainingError(f"{self.config_path} does not hold a training configuration.")
        return data

    def write_config_dict(self, data: dict) -> None:
        write_atomic(self.config_path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))

    # -- checkpoints, samples, metrics ----------------------------------------------------------------------------

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints_dir / f"{CHECKPOINT_PREFIX}{step}"

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints, oldest first (half-written ones, left by a killed process, are ignored)."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = []
        for entry in self.checkpoints_dir.iterdir():
            match = _CHECKPOINT_RE.match(entry.name)
            if match and (entry / CHECKPOINT_DONE_NAME).is_file():
                found.append((int(match.group(1)), entry))
        return sorted(found)

    def latest_checkpoint(self) -> tuple[int, Path] | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def samples(self) -> list[Path]:
        """Sample images, oldest step first."""
        if not self.samples_dir.is_dir():
            return []
        return sorted(self.samples_dir.glob("*.png"), key=lambda p: (_sample_step(p), p.name))

    def read_metrics(self) -> list[dict]:
        """Every complete metrics line (a line cut short by a kill is skipped)."""
        try:
            text = self.metrics_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        rows = []
        for line in text.splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                rows.append(row)
        return rows

    def append_metrics(self, row: dict) -> None:
        with open(self.metrics_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
            handle.flush()

    def truncate_metrics(self, last_step: int) -> None:
        """Keep the metrics of steps <= `last_step` (a resumed run repeats the steps after its checkpoint)."""
        rows = [row for row in self.read_metrics()
                if isinstance(row.get("step"), int) and not isinstance(row.get("step"), bool) and row["step"] <= last_step]
        write_atomic(self.metrics_path, "".join(json.dumps(row) + "\n" for row in rows).encode("utf-8"))


def _sample_step(path: Path) -> int:
    match = re.match(r"^step-(\d+)", path.stem)
    return int(match.group(1)) if match else -1


_WHOLE = {"step", "total", "checkpoint_step", "pid"}
_NUMBERS = _WHOLE | {"loss", "seconds_per_step", "eta_seconds", "created_at", "started_at", "finished_at",
                     "updated_at"}


def _number(value: object, whole: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return isinstance(value, int) if whole else not math.isinf(value)  # a NaN loss is a real reading


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this id exists and is not a zombie (tells a running job from one whose process died)."""
    if not pid:
        return False
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's process: it exists
        return True
