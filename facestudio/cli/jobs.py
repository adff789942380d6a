"""The command line's job commands: `jobs [list|show|cancel|resume|run]`.

A thin front over `facestudio.jobs`: the same store and runner the studio uses, on the same folders
(`FACESTUDIO_HOME/jobs`), so a job queued in the UI can be watched, cancelled or resumed from a terminal.
Errors reach `cli.main`, which prints one sentence and exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from facestudio.errors import FaceStudioError
from facestudio.jobs import ACTIVE_STATES, RunStage, RunState
from facestudio.text import format_duration

#: How often (seconds at most) a running job's progress line is printed while `jobs resume`/`jobs run` wait.
PROGRESS_EVERY_SECONDS = 2.0
#: How often the runner of `jobs resume`/`jobs run` reads the running job's status.
POLL_SECONDS = 0.5
#: `show` prints this many lines of train.log by default.
LOG_LINES = 10


def add_job_commands(commands) -> None:
    jobs = commands.add_parser(
        "jobs", help="list, inspect, cancel and resume background training jobs",
        description="Training jobs queued by the studio (or the command line) in FACESTUDIO_HOME/jobs. They run one "
                    "at a time, each in its own process. Without an action: the list.")
    jobs.set_defaults(handler=run_list, json=False)
    actions = jobs.add_subparsers(dest="jobs_action", metavar="ACTION")

    listing = actions.add_parser("list", help="every job, newest first (the default action)")
    listing.add_argument("--json", action="store_true", help="print a JSON list with an object per job")
    listing.set_defaults(handler=run_list)

    show = actions.add_parser("show", help="one job in detail: status, settings, metrics, checkpoint, log")
    show.add_argument("job_id", metavar="ID")
    show.add_argument("--json", action="store_true", help="print the details as JSON")
    show.add_argument("--log-lines", type=_count, default=LOG_LINES, metavar="N",
                      help=f"how many of the last lines of train.log to show (default {LOG_LINES})")
    show.set_defaults(handler=run_show)

    cancel = actions.add_parser("cancel", help="cancel a queued job, or stop a running one at its next step")
    cancel.add_argument("job_id", metavar="ID")
    cancel.set_defaults(handler=run_cancel)

    resume = actions.add_parser(
        "resume", help="queue a cancelled, failed or interrupted job again (it continues from its checkpoint)",
        description="Queue the job again; then, unless the studio is already running jobs, run the queue in this "
                    "terminal until it is empty (Ctrl-C cancels the running job after its checkpoint).")
    resume.add_argument("job_id", metavar="ID")
    resume.add_argument("--no-wait", action="store_true",
                        help="only queue it; the studio (or a later `jobs run`) runs it")
    resume.set_defaults(handler=run_resume)

    run = actions.add_parser("run", help="run the queued jobs in this terminal until none is left",
                             description="Run queued jobs one at a time in this terminal until the queue is empty "
                                         "(refused while the studio runs them).")
    run.set_defaults(handler=run_queue)


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0; got {value}")
    return value


def _store(args: argparse.Namespace):
    from facestudio.jobs import JobStore

    return JobStore(args.settings.home)


# -- list -------------------------------------------------------------------------------------------------------------


def run_list(args: argparse.Namespace) -> int:
    store = _store(args)
    rows = [(job, store.effective_status(job)) for job in store.list()]
    if args.json:
        print(json.dumps([job.to_dict(status) for job, status in rows], indent=2, ensure_ascii=False))
        return 0
    if not rows:
        print(f"no jobs in {store.root}")
        return 0
    table = [("ID", "NAME", "STATE", "STEP", "LOSS", "ETA")]
    for job, status in rows:
        table.append((job.id, _clip(job.name, 24), status.state, _steps(status),
                      _loss(status.loss), _eta(status)))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


# -- show -------------------------------------------------------------------------------------------------------------


def run_show(args: argparse.Namespace) -> int:
    store = _store(args)
    job = store.get(args.job_id)
    status = store.effective_status(job)
    folder = job.folder
    try:
        config: dict | str = folder.read_config_dict()
    except FaceStudioError as err:  # a damaged config.json is worth showing, not worth failing `show` over
        config = str(err)
    metrics = folder.read_metrics()
    samples = folder.samples()
    log_tail = _tail(folder.log_path, args.log_lines)
    if args.json:
        details = job.to_dict(status)
        details.update(config=config, last_metrics=metrics[-1] if metrics else None,
                       samples=[str(p) for p in samples], log=str(folder.log_path), log_tail=log_tail)
        print(json.dumps(details, indent=2, ensure_ascii=False))
        return 0
    latest = folder.latest_checkpoint()
    if status.stage == RunStage.PREPARING:
        progress = f"preparing photo {status.step}/{status.total}" if status.total else "preparing its photos"
    else:
        progress = f"step {status.step}/{status.total} ({status.fraction:.0%})"
    line = [status.state, progress]
    if status.loss is not None:
        line.append(f"loss {_loss(status.loss)}")
    if status.state in ACTIVE_STATES and status.eta_seconds is not None:
        line.append(f"ETA {_eta(status)}")
    print(f"job         {job.id}  ({job.name})")
    if job.owner is not None:  # queued by a studio user in their own workspace (--auth)
        print(f"owner       {job.owner}")
    print(f"state       {'  '.join(line)}")
    if status.error:
        print(f"error       {status.error}")
    print(f"submitted   {_when(job.created_at)}" + (f", started {_when(status.started_at)}" if status.started_at
                                                   else "") + (f", ended {_when(status.finished_at)}"
                                                                if status.finished_at else ""))
    print(f"folder      {folder.root}")
    print(f"settings    {_config_summary(config)}")
    report = folder.read_prepare_report()
    if report is not None:
        counted = f"{report.get('kept')} kept, {report.get('rejected')} rejected"
        print(f"photos      {counted}{'' if report.get('complete') else ' so far'} ({folder.prepare_report_path})")
    if metrics:
        print(f"metrics     {_metrics_summary(metrics[-1])}")
    print(f"checkpoint  {f'step {latest[0]} ({latest[1]})' if latest else 'none yet'}")
    print(f"samples     {f'{len(samples)}, latest {samples[-1]}' if samples else 'none yet'}")
    adapter = folder.adapter_path
    print(f"adapter     {adapter if adapter.is_file() else 'not yet (written when the run is done)'}")
    if log_tail:
        print(f"log         last {len(log_tail)} line(s) of {folder.log_path}:")
        for text in log_tail:
            print(f"  {text}")
    return 0


def _config_summary(config: dict | str) -> str:
    if isinstance(config, str):
        return config
    keys = ("dataset", "base_model", "init", "steps", "lr", "batch_size", "resolution", "fair_weight", "seed")
    return ", ".join(f"{key} {config[key]}" for key in keys if config.get(key) is not None)


def _metrics_summary(row: dict) -> str:
    return ", ".join(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
                     for key, value in row.items())


def _tail(path: Path, count: int) -> list[str]:
    if count == 0:
        return []
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - 64 * 1024))
            lines = handle.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return []
    return lines[-count:]


# -- cancel and resume ------------------------------------------------------------------------------------------------


def run_cancel(args: argparse.Namespace) -> int:
    store = _store(args)
    status = store.cancel(args.job_id)
    if status.state == RunState.CANCELLED:
        print(f"cancelled {args.job_id} (it had not started)")
    else:
        print(f"asked {args.job_id} to stop: it saves a checkpoint at its next step, then shows as cancelled "
              f"(`python -m facestudio jobs resume {args.job_id}` continues it)")
    return 0


def run_resume(args: argparse.Namespace) -> int:
    from facestudio.jobs import runner_active

    store = _store(args)
    job = store.resume(args.job_id)
    status = job.status()
    start = f"step {status.checkpoint_step}" if status.checkpoint_step else "the start"
    print(f"queued {job.id} again; it continues from {start}")
    if args.no_wait:
        return 0
    if runner_active(store.home):
        print("the studio is running jobs; it starts this one when the jobs before it are done")
        return 0
    _run_queue(store, args.settings)
    return 0 if job.status().state == RunState.DONE else 1


def run_queue(args: argparse.Namespace) -> int:
    ran = _run_queue(_store(args), args.settings)
    if not ran:
        print("no queued jobs")
    return 0 if all(job.status().state == RunState.DONE for job in ran) else 1


def _run_queue(store, settings) -> list:
    from facestudio.jobs import JobRunner

    printer = _ProgressPrinter()
    return JobRunner(store, on_update=printer, poll_seconds=POLL_SECONDS, settings=settings).run_until_idle()


class _ProgressPrinter:
    """One line per state change, and a progress line at most every PROGRESS_EVERY_SECONDS while a job runs."""

    def __init__(self):
        self._last: dict[str, tuple[str, float]] = {}

    def __call__(self, job, status) -> None:
        state, printed_at = self._last.get(job.id, ("", 0.0))
        now = time.monotonic()
        if status.state == state and now - printed_at < PROGRESS_EVERY_SECONDS:
            return
        self._last[job.id] = (status.state, now)
        if status.state == RunState.DONE:
            print(f"{job.id}  done: adapter at {job.folder.adapter_path}", flush=True)
        elif status.state in (RunState.FAILED, RunState.INTERRUPTED):
            print(f"{job.id}  {status.state}: {status.error}", file=sys.stderr, flush=True)
        elif status.state in ACTIVE_STATES:
            extra = "".join((f"  loss {_loss(status.loss)}" if status.loss is not None else "",
                             f"  ETA {_eta(status)}" if status.eta_seconds is not None else ""))
            where = (f"preparing photo {status.step}/{status.total}" if status.stage == RunStage.PREPARING
                     else f"step {status.step}/{status.total}")
            print(f"{job.id}  {status.state}  {where}{extra}", flush=True)
        else:
            print(f"{job.id}  {status.state}", flush=True)


# -- formatting -------------------------------------------------------------------------------------------------------


def _steps(status) -> str:
    """Optimizer steps, or photos checked while the job prepares them."""
    if status.stage == RunStage.PREPARING:
        return f"{status.step}/{status.total} photos" if status.total else "photos"
    return f"{status.step}/{status.total}"


def _loss(loss: float | None) -> str:
    return "-" if loss is None else f"{loss:.4f}"


def _eta(status) -> str:
    if status.state not in ACTIVE_STATES or status.eta_seconds is None:
        return "-"
    return format_duration(status.eta_seconds)


def _when(timestamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp)) if timestamp else "-"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
