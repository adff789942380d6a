"""Train tab: photos of a person (uploaded, or a saved identity's) -> a background job that prepares them (photo
check) and trains, followed live (state, step, loss, ETA and times in words; loss plot, sample images; the raw
status behind "Details") and cancelled or resumed. A click only copies the photos into
the job and queues it: the face analyzer, the dataset and the training all run in the job's own process, after the
studio frees its models, so the click never waits for the engine or a generation. The jobs live on disk, so the list
survives a page reload or a restart of the studio."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import pandas as pd

from facestudio.errors import FaceStudioError, InvalidRequestError
from facestudio.jobs import FINISHED_STATES, RESUMABLE_STATES, Job, RunStage, RunState, RunStatus, TrainConfig
from facestudio.jobs.runner import visible_gpu_count
from facestudio.text import format_duration
from facestudio.training.config import (
    INSTALL_8BIT,
    MAX_BATCH_SIZE,
    MAX_RESOLUTION,
    MAX_STEPS,
    MAX_WARMUP_FRACTION,
    OPTIMIZERS,
    eight_bit_available,
)
from facestudio.ui.common import GPU, number, user_errors
from facestudio.ui.context import AUTO_ADAPTER, StudioContext
from facestudio.ui.identity_tab import identity_choices, uploaded_paths
from facestudio.ui.workspace import Workspace

logger = logging.getLogger("facestudio.app")

REFRESH_SECONDS = 2.0
JOB_COLUMNS = ["id", "name", "state", "step", "loss", "ETA", "adapter"]
REPORT_COLUMNS = ["photo", "kept", "reason"]
SCRATCH = "scratch"
#: The most training processes the tab offers (one per GPU).
MAX_PROCESSES = 64
#: The Train tab's numbers: (lowest, highest, whole). `TrainConfig.check` has the finer rules (a multiple of 64, ...);
#: this is the one check that turns whatever a client sent into a number, naming the control.
TRAIN_NUMBERS = {
    "steps": (1, MAX_STEPS, True), "lr": (0.0, 1.0, False), "fair_weight": (0.0, 1000.0, False),
    "drop_prob": (0.0, 1.0, False), "shuffle_prob": (0.0, 1.0, False), "resolution": (64, MAX_RESOLUTION, True),
    "batch_size": (1, MAX_BATCH_SIZE, True), "checkpoint_every": (1, MAX_STEPS, True),
    "sample_every": (0, MAX_STEPS, True), "warmup_steps": (0, MAX_STEPS, True),
}
#: The "quick test" preset: a run that shows within minutes whether everything works (few steps, small images); its
#: warm-up is capped by `TrainConfig.effective_warmup_steps` like every run's.
QUICK_TEST = {"steps": 40, "resolution": 256, "batch_size": 1, "checkpoint_every": 20, "sample_every": 0}
PRESETS = [("Standard", "standard"), ("Quick test (40 steps, 256 px)", "quick")]
NO_JOB = "No job selected yet: start one, or choose one in the list."


@dataclass
class TrainTab:
    job: gr.Dropdown
    refresh: list  # components a page load refreshes, with `refresh_outputs`
    identity: gr.Dropdown | None = field(default=None)  # the saved identity to train from (refreshed with the others)


def local_time(seconds: float | None) -> str:
    """A time stamp as a person reads it: the time of day today, else the date too (the studio's local time)."""
    if not seconds:
        return ""
    moment = time.localtime(seconds)
    same_day = time.strftime("%Y-%m-%d", moment) == time.strftime("%Y-%m-%d")
    return time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M", moment)


def _eta(seconds: float | None) -> str:
    return "" if seconds is None else format_duration(seconds)


def progress(status: RunStatus) -> str:
    """Where a job is: photos checked while it prepares them, optimizer steps while it trains."""
    if status.stage == RunStage.PREPARING:
        return f"photo {status.step}/{status.total}" if status.total else "photos to check"
    return f"step {status.step}/{status.total}"


def jobs_table(ctx: StudioContext, ws: Workspace | None = None) -> pd.DataFrame:
    """The jobs workspace `ws` sees (`None`: what a page shows before it knows who is looking)."""
    rows = []
    for job in (ws or ctx.workspace()).jobs(ctx.jobs):
        status = ctx.jobs.effective_status(job)
        rows.append([job.id, job.name, status.state, progress(status),
                     "" if status.loss is None else f"{status.loss:.4f}", _eta(status.eta_seconds),
                     "yes" if job.folder.adapter_path.is_file() else ""])
    return pd.DataFrame(rows, columns=JOB_COLUMNS)


def job_choices(ctx: StudioContext, ws: Workspace | None = None) -> list[tuple[str, str]]:
    return [(f"{job.name} ({job.id})", job.id) for job in (ws or ctx.workspace()).jobs(ctx.jobs)]


def report_table(job: Job) -> pd.DataFrame:
    """The job's photo check (its `prepare.json`), as far as it got; empty until the job starts."""
    report = job.folder.read_prepare_report() or {}
    rows = [[item.get("source", ""), item.get("status", ""),
             "" if item.get("status") == "kept" else f"{item.get('reason')}: {item.get('detail')}"]
            for item in (report.get("items") if isinstance(report.get("items"), list) else []) if isinstance(item, dict)]
    return pd.DataFrame(rows, columns=REPORT_COLUMNS)


def queue_training(ctx: StudioContext, files, folder: str | None, name: str | None, base_model: str | None,
                   init: str | None, ws: Workspace | None = None, identity: str | None = None,
                   **settings) -> Job:
    """Copy the uploaded photos (or a saved identity's) into a new job, or note a folder inside the workspace's
    folder, and queue it as the workspace's job, with `settings` (TrainConfig fields) and the studio's device and
    face detector. Touches no model but the face analyzer (the one-person check)."""
    ws = ws or ctx.workspace()
    from facestudio.jobs.intake import submit_photo_job

    if identity is not None and not isinstance(identity, str):
        raise InvalidRequestError("The saved identity must be one of the names in the list.")
    name = " ".join(str(name or "").split())[:64] or (identity or "").strip()[:64]
    if not name:
        raise InvalidRequestError("Give the training a name (for example the person's name).")
    if folder is not None and not isinstance(folder, str):
        raise InvalidRequestError("The folder of photos must be a path inside the studio's folder.")
    photos = uploaded_paths(ctx, files)
    if identity and not photos and not (folder or "").strip():  # uploads or a folder win, as in Generate
        photos = list(ws.identities.get(identity).photos)
    if len(photos) >= 2:
        one_person(ctx, photos)
    base = ctx.checked_choice(base_model, ctx.base_model_choices, "base model")
    init = ctx.checked_choice(init, lambda: init_choices(ctx, ws), "initial adapter") or "default"
    processes = int(number(settings.pop("processes", 1), "processes", 1, MAX_PROCESSES, whole=True))
    if processes > 1 and ":" in ctx.options.device:
        raise InvalidRequestError(f"The studio trains on {ctx.options.device}, one GPU; start it with --device cuda "
                                  "to train on several.", field="processes")
    optimizer = settings.pop("optimizer", TrainConfig.optimizer)
    if optimizer not in OPTIMIZERS:
        raise InvalidRequestError(f"The optimizer must be one of {', '.join(OPTIMIZERS)}.", field="optimizer")
    typed = {key: (number(value, key, *TRAIN_NUMBERS[key][:2], whole=TRAIN_NUMBERS[key][2])
                   if key in TRAIN_NUMBERS else value is True) for key, value in settings.items()}
    config = TrainConfig(dataset="-", base_model=base, init=init, face_encoder=ctx.options.face_encoder,
                         device=ctx.options.device, face_backend=ctx.options.backend, optimizer=optimizer, **typed)
    folder = (folder or "").strip() or None
    if folder is not None:  # the page asks for a folder relative to the workspace (FACESTUDIO_HOME when shared)
        folder = str(ws.folder(folder))
    job = submit_photo_job(ctx.jobs, config, name, photos=photos or None, folder=folder, owner=ws.owner,
                           processes=processes)
    ctx.runner.wake()
    return job


def one_person(ctx: StudioContext, photos: list[Path]) -> None:
    """The Identity tab's different-person check, before a job is queued: photos of two people would train one
    adapter on both without a word."""
    from facestudio.engine.identities import inspect_photos

    check = inspect_photos(ctx.manager.analyzer(), photos, names=[p.name for p in photos],
                           max_pixels=ctx.settings.max_pixels)
    if check.warnings:
        raise InvalidRequestError(f"Train on photos of one person: {check.warnings[0]}")


def likeness_line(ctx: StudioContext, job_id: str | None, ws: Workspace | None = None) -> str:
    """"likeness on held-out photos: before x -> after y" from the job's evaluation.json (written when a run that
    held photos out ends); empty before that."""
    from facestudio.training.evaluation import likeness_before_after, read_evaluation

    if not job_id:
        return ""
    try:
        evaluation = read_evaluation((ws or ctx.workspace()).job(ctx.jobs, job_id).folder.root)
    except FaceStudioError:  # a job removed meanwhile (or another user's): the status line says so, this line stays empty
        return ""
    if evaluation is None:
        return ""

    before, after = ("–" if value is None else f"{value:.3f}" for value in likeness_before_after(evaluation))
    against = "held-out" if evaluation.get("against") == "held-out" else "training"
    return f"likeness on {against} photos: before {before} → after {after}"


def init_choices(ctx: StudioContext, ws: Workspace | None = None) -> list[tuple[str, str]]:
    """Where training starts: the released adapter of the base model, another adapter (of those workspace `ws`
    sees), or from scratch."""
    choices = [("released adapter of the base model", "default")]
    choices += [(label, value) for label, value in ctx.adapter_choices(ws) if value != AUTO_ADAPTER]
    return [*choices, ("from scratch", SCRATCH)]


def status_text(ctx: StudioContext, job: Job, state: RunStatus) -> str:
    """The selected job in words: what it does and how far it is, its settings, its times (local), the photo check,
    its error or its adapter."""
    stage = "preparing · " if state.stage == RunStage.PREPARING else ""
    parts = [f"**{job.name}** · {state.state} · {stage}{progress(state)}"]
    if state.stage != RunStage.PREPARING and state.total:
        parts[0] += f" ({100 * state.step // state.total}%)"
    if state.loss is not None:
        parts.append(f"loss {state.loss:.4f}")
    if state.eta_seconds is not None and state.state not in FINISHED_STATES:
        parts.append(f"ETA {_eta(state.eta_seconds)}")
    if state.checkpoint_step:
        parts.append(f"checkpoint at step {state.checkpoint_step}")
    text = " · ".join(parts)
    times = [f"queued {local_time(state.created_at or job.created_at)}"]
    if state.started_at:
        times.append(f"started {local_time(state.started_at)}")
    if state.finished_at and state.state in FINISHED_STATES:
        times.append(f"ended {local_time(state.finished_at)}")
    times.append(f"updated {local_time(state.updated_at)}")
    text += "\n\n" + " · ".join(times)
    text += settings_text(job)
    report = job.folder.read_prepare_report() or {}
    if report.get("complete"):
        text += f"\n\nPhotos: {report.get('kept')} kept, {report.get('rejected')} rejected."
        warnings = report.get("warnings")
        text += "".join(f"\n- ⚠️ {warning}" for warning in (warnings if isinstance(warnings, list) else []))
    if state.error:
        text += f"\n\n⚠️ {state.error}"
    if job.folder.adapter_path.is_file():
        text += (f"\n\nAdapter: `{ctx.shown_path(job.folder.adapter_path)}` (choose it in Generate → FACT "
                 "adapter).")
    return text


def settings_text(job: Job) -> str:
    """The run's size and schedule, with the warm-up it really uses (capped to a fraction of the steps)."""
    from facestudio.errors import FaceStudioError
    from facestudio.training.config import read_config

    try:
        config = read_config(job.folder)
    except (FaceStudioError, OSError, ValueError) as err:  # the job's own error says it; the status still reads
        logger.debug("job %s: no readable config: %s", job.id, err)
        return ""
    text = (f"\n\n{config.steps} steps · {config.resolution} px · batch {config.batch_size} · learning rate "
            f"{config.lr:g} · warm-up {config.effective_warmup_steps} step(s)")
    if config.effective_warmup_steps < config.warmup_steps:
        text += f" (capped to {MAX_WARMUP_FRACTION:.0%} of the steps; {config.warmup_steps} asked)"
    return text


def action_text(job: Job, state: RunStatus) -> str:
    """The line beside Cancel and Resume: what the buttons do now, from the job's state (so it never goes stale)."""
    if state.state == RunState.QUEUED:
        return f"Job {job.id} is queued; it starts when the jobs before it end. Cancel removes it from the queue."
    if state.state == RunState.RUNNING:
        return f"Job {job.id} is running. Cancel stops it at its next step (with a checkpoint)."
    if state.state == RunState.CANCELLING:
        return f"Job {job.id} is cancelling: it stops after its next step and checkpoint."
    if state.state in RESUMABLE_STATES:
        where = f" from step {state.checkpoint_step}" if state.checkpoint_step else ""
        return f"Job {job.id} is {state.state}. Resume continues it{where}."
    return f"Job {job.id} is {state.state}."


def build_train_tab(ctx: StudioContext) -> TrainTab:
    defaults = TrainConfig(dataset="-")

    @user_errors
    def start(files, folder, name, base_model, init, steps, lr, fair_weight, drop_prob, shuffle_prob, curriculum,
              resolution, batch_size, checkpoint_every, sample_every, identity=None, warmup_steps=None,
              processes=1, eight_bit=False, fused_backward=False, request: gr.Request = None):
        ws = ctx.workspace(request)
        extra = {} if warmup_steps is None or warmup_steps == "" else {"warmup_steps": warmup_steps}
        extra["optimizer"] = "adamw8bit" if eight_bit is True else "adamw"
        extra["fused_backward"] = fused_backward is True
        job = queue_training(ctx, files, folder, name, base_model, init, ws, identity=identity or None, steps=steps,
                             lr=lr, fair_weight=fair_weight, drop_prob=drop_prob, shuffle_prob=shuffle_prob,
                             curriculum=curriculum, resolution=resolution, batch_size=batch_size,
                             checkpoint_every=checkpoint_every, sample_every=sample_every, processes=processes, **extra)
        message = (f"Queued job **{job.id}** at {local_time(job.created_at)}: it checks and crops the photos first "
                   "(the photo check below fills in as it goes), then trains.")
        return message, gr.update(choices=job_choices(ctx, ws), value=job.id), jobs_table(ctx, ws)

    @user_errors
    def status(job_id: str | None, request: gr.Request = None):
        ws = ctx.workspace(request)
        table = jobs_table(ctx, ws)
        if not job_id:  # nothing chosen (yet): keep what the page shows, never a stale "no job" over a new job
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), table, gr.skip()
        job = ws.job(ctx.jobs, job_id)  # the id is checked before the file system; another user's is "no job"
        state = ctx.jobs.effective_status(job)
        metrics = job.folder.read_metrics()
        metrics = [row for row in metrics if isinstance(row.get("step"), int) and isinstance(row.get("loss"), float | int)
                   and not isinstance(row.get("loss"), bool)]  # a damaged line is left out of the plot
        plot = pd.DataFrame({"step": [row["step"] for row in metrics], "loss": [row["loss"] for row in metrics]})
        samples = [(ctx.handout(path), path.stem) for path in job.folder.samples()[-8:]]  # copies, never jobs/
        data = job.to_dict(state)
        for key in ("folder", "adapter"):  # relative to FACESTUDIO_HOME: no path of the machine in an answer
            data[key] = ctx.shown_path(data[key]) if data.get(key) else data.get(key)
        data["updated"] = time.strftime("%H:%M:%S")
        return (status_text(ctx, job, state), data, plot, samples, report_table(job), table,
                action_text(job, state))

    @user_errors
    def cancel(job_id: str | None, request: gr.Request = None):
        if not job_id:
            raise InvalidRequestError("Choose the job to cancel.")
        state = ctx.jobs.cancel(ctx.workspace(request).job(ctx.jobs, job_id).id)
        if state.state == RunState.CANCELLING:
            return f"Cancelling job {job_id}: it stops after its next step and checkpoint."
        return f"Job {job_id}: {state.state}."

    @user_errors
    def resume(job_id: str | None, request: gr.Request = None):
        if not job_id:
            raise InvalidRequestError("Choose the job to resume.")
        job = ctx.jobs.resume(ctx.workspace(request).job(ctx.jobs, job_id).id)
        ctx.runner.wake()
        return f"Job {job.id} is queued again; it continues from its last checkpoint."

    def refresh_jobs(ws: Workspace | None = None):
        choices = job_choices(ctx, ws)
        return gr.update(choices=choices, value=choices[0][1] if choices else None), jobs_table(ctx, ws)

    def use_preset(preset: str):
        values = QUICK_TEST if preset == "quick" else {
            "steps": defaults.steps, "resolution": defaults.resolution, "batch_size": defaults.batch_size,
            "checkpoint_every": defaults.checkpoint_every, "sample_every": defaults.sample_every}
        return (values["steps"], values["resolution"], values["batch_size"], values["checkpoint_every"],
                values["sample_every"])

    gr.Markdown("Train the face adapter further on photos of one person (FACT's decoupled training with FAIR). A "
                "job runs in the background, one at a time: it checks and crops the photos first, then trains, and "
                "keeps checkpoints, so it can be cancelled and resumed, and survives a restart of the studio.")
    with gr.Row():
        with gr.Column(scale=5):
            with gr.Row():
                identity = gr.Dropdown(label="Saved identity", choices=identity_choices(ctx), value=None,
                                       allow_custom_value=True, elem_id="train-identity",
                                       info="its photos (from the Identity tab)")
                files = gr.File(label="…or photos of the person", file_count="multiple", file_types=["image"],
                                height=110, elem_id="train-photos")
            with gr.Row():
                name = gr.Textbox(label="Name", placeholder="alex (default: the identity's name)",
                                  elem_id="train-name")
                preset = gr.Radio(label="Preset", choices=PRESETS, value="standard", elem_id="train-preset",
                                  info="quick test: does it run at all, in minutes")
            with gr.Row():
                steps = gr.Number(label="Steps", value=defaults.steps, precision=0, minimum=1, elem_id="train-steps")
                lr = gr.Number(label="Learning rate", value=defaults.lr)
                warmup_steps = gr.Number(label="Warm-up steps", value=defaults.warmup_steps, precision=0, minimum=0,
                                         elem_id="train-warmup",
                                         info=f"capped to {MAX_WARMUP_FRACTION:.0%} of the steps")
            start_button = gr.Button("Start training", variant="primary", elem_id="train-start")
            message = gr.Markdown(elem_id="train-message")
            with gr.Accordion("More settings", open=False):
                folder = gr.Textbox(label="…or a folder of photos inside the studio's folder",
                                    placeholder="photos/alex (relative to FACESTUDIO_HOME)")
                with gr.Row():
                    base_model = gr.Dropdown(label="Base model", choices=ctx.base_model_choices(),
                                             value=ctx.base_model_choices()[0][1])
                    init = gr.Dropdown(label="Start from", choices=init_choices(ctx),  # the shown path, not the machine's
                                       value=ctx.shown([("", ctx.options.adapter)])[0][1] if ctx.options.adapter
                                       else "default", allow_custom_value=True)
                with gr.Row():
                    fair_weight = gr.Number(label="FAIR weight", value=defaults.fair_weight)
                    drop_prob = gr.Slider(0.0, 1.0, value=defaults.drop_prob, step=0.01,
                                          label="Face drop probability")
                    shuffle_prob = gr.Slider(0.0, 1.0, value=defaults.shuffle_prob, step=0.01,
                                             label="Shuffle probability (another photo of the person)")
                with gr.Row():
                    resolution = gr.Number(label="Resolution", value=defaults.resolution, precision=0,
                                           elem_id="train-resolution")
                    batch_size = gr.Number(label="Batch size", value=defaults.batch_size, precision=0)
                    checkpoint_every = gr.Number(label="Checkpoint every N steps", value=defaults.checkpoint_every,
                                                 precision=0)
                    sample_every = gr.Number(label="Samples every N steps (0: none)", value=defaults.sample_every,
                                             precision=0)
                    gpus = visible_gpu_count()  # the option exists only where there is more than one GPU to train on
                    processes = gr.Slider(1, max(2, gpus), value=1, step=1, label="Processes (one per GPU)",
                                          visible=gpus > 1, elem_id="train-processes")
                with gr.Row():
                    curriculum = gr.Checkbox(label="Curriculum (shuffle ramps up)", value=defaults.curriculum)
                    installed = eight_bit_available()  # optional: offered where bitsandbytes is installed
                    eight_bit = gr.Checkbox(label="8-bit optimizer (about 1.5 GB less memory)",
                                            value=installed and defaults.optimizer == "adamw8bit",
                                            interactive=installed, elem_id="train-8bit",
                                            info="bitsandbytes' 8-bit AdamW, on a GPU or the CPU" if installed
                                            else f"needs bitsandbytes: {INSTALL_8BIT}, then restart the studio")
                    fused_backward = gr.Checkbox(label="Step in the backward pass (up to 1 GB less memory)",
                                                 value=defaults.fused_backward, elem_id="train-fused-backward",
                                                 info="frees each gradient as soon as it is used; one process, "
                                                      "clipping per parameter")
            report = gr.Dataframe(headers=REPORT_COLUMNS, label="Photo check (of the selected job)",
                                  interactive=False, wrap=True, column_widths=["40%", "20%", "40%"],
                                  elem_id="train-report")
        with gr.Column(scale=6):
            with gr.Row(equal_height=True):
                job = gr.Dropdown(label="Job", choices=job_choices(ctx), value=None, allow_custom_value=True,
                                  elem_id="train-job", scale=4)
                cancel_button = gr.Button("Cancel", variant="stop", elem_id="train-cancel", scale=1, min_width=90)
                resume_button = gr.Button("Resume", elem_id="train-resume", scale=1, min_width=90)
            job_message = gr.Markdown(elem_id="train-job-message")
            progress_text = gr.Markdown(NO_JOB, elem_id="train-progress")
            likeness_text = gr.Markdown(elem_id="train-likeness")
            loss_plot = gr.LinePlot(x="step", y="loss", title="Training loss", height=220, elem_id="train-loss")
            samples = gr.Gallery(label="Samples", columns=4, height=160, elem_id="train-samples", object_fit="contain")
            with gr.Accordion("Details (the job's status as JSON)", open=False, elem_id="train-details"):
                job_json = gr.JSON(label="Job status", open=True)
            table = gr.Dataframe(headers=JOB_COLUMNS, label="Jobs", interactive=False, wrap=True,
                                 column_widths=["24%", "13%", "15%", "15%", "10%", "9%", "14%"],
                                 elem_id="train-jobs")
    timer = gr.Timer(REFRESH_SECONDS)

    status_outputs = [progress_text, job_json, loss_plot, samples, report, table, job_message]
    # In the GPU queue: the click checks that the photos show one person with the shared face analyzer (the Identity
    # tab's check), then copies them and queues the job; the job itself prepares and trains.
    start_button.click(start, [files, folder, name, base_model, init, steps, lr, fair_weight, drop_prob,
                               shuffle_prob, curriculum, resolution, batch_size, checkpoint_every, sample_every,
                               identity, warmup_steps, processes, eight_bit, fused_backward],
                       [message, job, table], api_name="train_start", preprocess=False, concurrency_id=GPU)
    timer.tick(status, job, status_outputs, api_name="train_status", show_progress="hidden", queue=False)
    job.change(status, job, status_outputs, api_visibility="private", show_progress="hidden", queue=False)
    cancel_button.click(cancel, job, job_message, api_name="train_cancel", queue=False)
    resume_button.click(resume, job, job_message, api_name="train_resume", queue=False)
    preset.change(use_preset, preset, [steps, resolution, batch_size, checkpoint_every, sample_every],
                  api_visibility="private", queue=False)

    def likeness(job_id: str | None, request: gr.Request = None):
        return likeness_line(ctx, job_id, ctx.workspace(request))

    for event in (timer.tick, job.change):
        event(likeness, job, likeness_text, api_visibility="private", show_progress="hidden", queue=False)

    def init_list(request: gr.Request = None):
        return gr.update(choices=init_choices(ctx, ctx.workspace(request)))

    init.focus(init_list, None, init, api_visibility="private")
    return TrainTab(job=job, refresh=[refresh_jobs, [job, table]], identity=identity)
