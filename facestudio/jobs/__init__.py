"""Background jobs: training runs queued in the studio home and run one at a time, each in its own process.

Layering: uses `facestudio.training` (the run-folder contract) and never imports torch, so the command line and
the UI can list and control jobs without loading it. The fronts use this package's public API only, job states
included (`RunState` and its sets, `RunStage`, and the `TrainConfig` a job runs with, re-exported here from
`facestudio.training`).
"""

from facestudio.jobs.lock import jobs_dir, runner_active
from facestudio.jobs.runner import JobRunner, trainer_command
from facestudio.jobs.status import effective_status
from facestudio.jobs.store import JOB_ID_PATTERN, Job, JobStore, check_job_id
from facestudio.training.config import TrainConfig
from facestudio.training.run import ACTIVE_STATES, FINISHED_STATES, RESUMABLE_STATES, RunStage, RunState, RunStatus

__all__ = [
    "ACTIVE_STATES",
    "FINISHED_STATES",
    "JOB_ID_PATTERN",
    "RESUMABLE_STATES",
    "Job",
    "JobRunner",
    "JobStore",
    "RunStage",
    "RunState",
    "RunStatus",
    "TrainConfig",
    "check_job_id",
    "effective_status",
    "jobs_dir",
    "runner_active",
    "trainer_command",
]
