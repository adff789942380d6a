"""Small pieces every tab uses: errors as `gr.Error`, GPU work marked for Spaces, and engine progress drawn on
the page."""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import gradio as gr

from facestudio.errors import FaceStudioError, InvalidRequestError

logger = logging.getLogger("facestudio.app")

#: Every event that runs on the GPU (or the shared face analyzer) shares this concurrency group: one at a time.
GPU = "gpu"

try:  # Hugging Face Spaces (ZeroGPU) attaches a GPU to functions marked with `spaces.GPU`.
    import spaces as _spaces
except ImportError:  # everywhere else the mark is a no-op
    _spaces = None


def gpu_work(duration: int = 120) -> Callable[[Callable], Callable]:
    """Mark a handler as GPU work: `spaces.GPU(duration=...)` when the `spaces` package is installed."""

    def mark(fn: Callable) -> Callable:
        return _spaces.GPU(duration=duration)(fn) if _spaces is not None else fn

    return mark


#: How the page names a request or setting field in an error: the label of the control that sets it. Fields not
#: listed are named by their words ("num_images" -> "Num images").
FIELD_LABELS = {
    "faces": "reference photos", "prompt": "Prompt", "negative_prompt": "Negative prompt", "seed": "Seed",
    "steps": "Steps", "cfg": "CFG", "scheduler": "Scheduler", "width": "Size (width)", "height": "Size (height)",
    "num_images": "Images", "face_strength": "Face strength", "face_delay_steps": "Delayed face condition",
    "lora": "Style LoRA", "lora_scale": "LoRA scale", "pose_strength": "Pose strength", "image": "template photo",
    "face_index": "Face to replace", "denoise": "Denoise", "mask_dilate_px": "Grow mask", "mask_feather_px": "Feather",
    "strengths": "Strengths to compare", "low_vram": "low-VRAM mode (restart the studio with --low-vram)",
    "device": "the studio's device (--device)", "dtype": "the studio's precision (--dtype)",
    "attention": "the studio's attention kernels (--attention)",
    # the Train tab
    "lr": "Learning rate", "fair_weight": "FAIR weight", "drop_prob": "Face drop probability",
    "shuffle_prob": "Shuffle probability", "resolution": "Resolution", "batch_size": "Batch size",
    "checkpoint_every": "Checkpoint every N steps", "sample_every": "Samples every N steps",
    "warmup_steps": "Warm-up steps", "subject": "Subject words",
    # the identity tools (Generate's Advanced, Inpaint's assignments)
    "best_of": "Best of N", "keep": "Keep", "face_fix": "Face fix", "face_fix_denoise": "Face fix denoise",
    "assignments": "Assignments",
}


def field_label(field: str | None) -> str | None:
    if field is None:
        return None
    return FIELD_LABELS.get(field, field.replace("_", " ").capitalize())


def number(value: Any, field: str, low: float, high: float, *, whole: bool = False) -> Any:
    """The one check every number from the page or an API client goes through: a number (a numeric string too),
    finite, within [low, high], and whole where the setting counts something. Anything else is one sentence naming
    the control (`field_label`), never a conversion error."""
    span = f"from {low:g} to {high:g}" if high < 1e15 else f"of at least {low:g}"
    expected = f"a whole number {span}" if whole else f"a number {span}"
    try:
        if isinstance(value, bool) or value is None:
            raise ValueError
        number_value = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidRequestError(f"`{field}` must be {expected}; got {_shown(value)}.", field=field) from None
    if not math.isfinite(number_value) or not low <= number_value <= high or \
            (whole and not number_value.is_integer()):
        raise InvalidRequestError(f"`{field}` must be {expected}; got {_shown(value)}.", field=field)
    return int(number_value) if whole else number_value


def _shown(value: Any) -> str:
    from facestudio.ui.context import clip

    return clip(repr(value), 40)


#: Absolute folders of this machine that an error message must not show (`hide_paths`), with what to say instead.
_HIDDEN_PATHS: list[tuple[str, str]] = []


def hide_paths(*pairs: tuple[str, str]) -> None:
    """Register folders (the studio's home, gradio's upload cache) that messages name by an alias instead."""
    for folder, alias in pairs:
        if folder and (folder, alias) not in _HIDDEN_PATHS:
            _HIDDEN_PATHS.append((folder, alias))
    _HIDDEN_PATHS.sort(key=lambda pair: -len(pair[0]))  # the longest (most specific) folder first


def without_paths(text: str) -> str:
    """`text` with every registered folder of this machine replaced by its alias."""
    for folder, alias in _HIDDEN_PATHS:
        text = text.replace(folder, alias)
    return text


def user_errors(fn: Callable) -> Callable:
    """Show the studio's errors as one sentence (`gr.Error`); anything unexpected is logged with its traceback
    and shown as one line, so the page never shows a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except FaceStudioError as err:
            raise gr.Error(without_paths(err.worded(field_label(err.field))), print_exception=False) from None
        except Exception as err:
            logger.exception("unexpected error in %s", fn.__name__)
            detail = without_paths(f"{type(err).__name__}: {str(err)[:200]}")
            raise gr.Error(f"Something went wrong ({detail}); the studio's log has the details.",
                           print_exception=False) from None

    return wrapper


class PageProgress:
    """Engine callbacks (downloads, denoising steps) -> `gr.Progress` on the page, with the time spent and the time
    left. The time left comes from the steps themselves: the seconds between the first finished step and the latest
    one, per step, times the steps still to run (the first step is left out because it pays for warm-up).

    `requested_steps` and `denoise` explain inpainting's shorter runs: denoise 0.6 of 30 steps runs 18, shown as
    "step 3/18 (denoise 0.6 × 30 steps)".
    """

    def __init__(self, progress: Any, what: str = "Generating", *, requested_steps: int | None = None,
                 denoise: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.progress = progress
        self.what = what
        self.requested_steps = requested_steps
        self.denoise = denoise
        self.clock = clock
        self.started = clock()
        self._first: tuple[float, int] | None = None  # (time, steps done) at the first finished step
        self._last: tuple[float, int] | None = None

    def step_text(self, step) -> str:
        """'step 3/18 (denoise 0.6 × 30 steps)' or 'step 3/30'."""
        text = f"step {step.step}/{step.steps}"
        requested, denoise = self.requested_steps, self.denoise
        if requested and step.steps < requested:
            # Only when the count is what denoise makes of the request (a recipe's stage may run its own count).
            if denoise is None:
                text += f" (of {requested} steps)"
            elif abs(step.steps - requested * denoise) <= 1:
                text += f" (denoise {denoise:g} × {requested} steps)"
        return text

    def remaining_s(self, step) -> float | None:
        """Seconds left, from the time per step measured so far (None until two steps are done)."""
        now = self.clock()
        done = step.image * step.steps + step.step
        total = step.num_images * step.steps
        if self._first is None or self._last is None or done <= self._last[1]:  # the first step, or a new stage
            self._first = self._last = (now, done)
            return None
        self._last = (now, done)
        per_step = (now - self._first[0]) / (done - self._first[1])
        return max(0.0, per_step * (total - done))

    def step(self, step) -> None:
        left = self.remaining_s(step)
        timing = f"{format_duration(self.clock() - self.started)} elapsed · " + (
            "estimating the time left" if left is None else
            "finishing" if step.step >= step.steps and step.image + 1 >= step.num_images else
            f"about {format_duration(left)} left")
        image = f"image {step.image + 1}/{step.num_images}, " if step.num_images > 1 else ""
        self.progress(step.fraction, desc=f"{self.what} · {image}{self.step_text(step)} · {timing}")

    def summary(self) -> str:
        """'in 1 min 05 s (2.1 s per step)': said when the run is over."""
        text = f"in {format_duration(self.clock() - self.started)}"
        if self._first is not None and self._last is not None and self._last[1] > self._first[1]:
            per_step = (self._last[0] - self._first[0]) / (self._last[1] - self._first[1])
            text += f" ({per_step:.1f} s per step)"
        return text

    def download(self, event) -> None:
        if event.total_bytes:
            from facestudio.engine import format_bytes

            self.progress(event.done_bytes / event.total_bytes,
                          desc=f"Downloading {event.model}: {format_bytes(event.done_bytes)} of "
                               f"{format_bytes(event.total_bytes)}")

    def say(self, fraction: float | None, text: str) -> None:
        self.progress(fraction, desc=text)


def format_duration(seconds: float) -> str:
    """'42 s', '3 min 05 s', '1 h 02 min'."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class SessionNotes:
    """The last outcome of a button per browser session ("done in 12 s", or the error), shown beside the button
    after the run: a toast closes on its own, this stays until the button is used again. Bounded: the oldest
    sessions are forgotten first."""

    MAX_SESSIONS = 512

    def __init__(self):
        self._notes: dict[str, str] = {}
        self._lock = threading.Lock()

    def put(self, request: Any, text: str) -> None:
        with self._lock:
            key = getattr(request, "session_hash", None) or "api"
            self._notes.pop(key, None)
            self._notes[key] = text
            while len(self._notes) > self.MAX_SESSIONS:
                self._notes.pop(next(iter(self._notes)))

    def get(self, request: Any) -> str:
        with self._lock:
            return self._notes.get(getattr(request, "session_hash", None) or "api", "")

    def noting_errors(self, fn: Callable) -> Callable:
        """`fn` with its `gr.Error` (the one sentence `user_errors` made) kept as this session's note."""

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            request = next((value for value in (*args, *kwargs.values()) if isinstance(value, gr.Request)), None)
            try:
                return fn(*args, **kwargs)
            except gr.Error as err:
                self.put(request, f"⚠️ **Error:** {err.message}")
                raise

        return wrapper


def similarity_caption(image) -> str:
    """'seed 7 · identity 0.82 (same person)' for a `GeneratedImage`."""
    parts = [f"seed {image.seed}"]
    if image.similarity is None:
        parts.append("no face found in the result")
    else:
        verdict = "same person" if image.similarity.same_person else "weak likeness"
        parts.append(f"identity {image.similarity.similarity:.2f} ({verdict})")
    return " · ".join(parts)
