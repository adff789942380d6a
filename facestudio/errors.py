"""One error hierarchy for the whole studio.

Every error a user can cause derives from `FaceStudioError`; its message is one sentence that names the file or
argument and the problem. The fronts (CLI, UI) turn these into an exit code or a `gr.Error`, and show a traceback
only when asked (`--debug`). Anything else that escapes is a bug.
"""

from __future__ import annotations


class FaceStudioError(Exception):
    """Base class of every error the studio reports to a user.

    `field` names the request field or setting the error is about (`steps`, `faces`, `low_vram`...), or is `None`.
    The message names it as `` `field` `` (or not at all); each front words it its own way with `worded`: the
    command line as its flag (`--steps`), the web page as the control's label ("Steps"). Library messages never
    name a flag or a control themselves, since the same error reaches both fronts.
    """

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field

    def worded(self, name: str | None) -> str:
        """The message with `field` called `name` (a flag or a label): in place of `` `field` `` where the message
        names it, else as a hint at the end."""
        text = str(self)
        if self.field is None or not name:
            return text
        token = f"`{self.field}`"
        if token in text:
            return text.replace(token, name)
        return f"{text[:-1]} ({name})." if text.endswith(".") else f"{text} ({name})"


class SettingsError(FaceStudioError):
    """A studio setting (a `FACESTUDIO_*` environment variable) has a value the studio cannot use."""


class ImageLoadError(FaceStudioError):
    """A file could not be read as a usable image (missing, empty, truncated, not an image, too large)."""


class FaceNotFoundError(FaceStudioError):
    """An image in which a face was required has none (or not the one asked for)."""


class PoseNotFoundError(FaceStudioError):
    """An image in which a body pose was required has none."""


class BackendUnavailableError(FaceStudioError):
    """An optional backend (insightface, dlib, mediapipe) was asked for but is not installed or has no weights."""


class CheckpointError(FaceStudioError):
    """A weights file is missing, unreadable, unsafe to load, or does not match the expected layout."""


class CheckpointMismatchError(CheckpointError):
    """A state dict does not have the tensors (names and shapes) the module expects."""

    def __init__(self, message: str, missing: list[str] | None = None, unexpected: list[str] | None = None,
                 mismatched: list[str] | None = None):
        super().__init__(message, field=None)
        self.missing = list(missing or [])
        self.unexpected = list(unexpected or [])
        self.mismatched = list(mismatched or [])


class UnsafeCheckpointError(CheckpointError):
    """A pickled checkpoint would need arbitrary code execution to load; it is refused."""


class InvalidRequestError(FaceStudioError):
    """A request or setting has a value out of range, or a combination that cannot work (`field` names it).

    Deliberately not a `ValueError`: a broad `except ValueError` around library code must not swallow a user's
    mistake."""


class UnknownModelError(FaceStudioError):
    """A model name is neither in the registry, nor an existing file or folder, nor a hub id."""

    def __init__(self, message: str, key: str = "", known: list[str] | None = None, *, field: str | None = None):
        super().__init__(message, field=field)
        self.key = key
        self.known = list(known or [])


class ModelNotAvailableError(FaceStudioError):
    """A model is not on disk and cannot be downloaded now (offline, no network, or downloads not allowed)."""


class DownloadError(FaceStudioError):
    """A download started but failed (network, disk, hub error); what was fetched stays for a resume."""


class InsufficientVRAMError(FaceStudioError):
    """The accelerator ran out of memory; the memory was freed and the message suggests a lighter setting."""

    def __init__(self, message: str, needed_bytes: int | None = None, free_bytes: int | None = None,
                 *, field: str | None = None):
        super().__init__(message, field=field)
        self.needed_bytes = needed_bytes
        self.free_bytes = free_bytes


class MetadataError(FaceStudioError):
    """A PNG does not carry FaceStudio generation parameters, or they are damaged."""


class DatasetError(FaceStudioError):
    """A training photo folder, archive or dataset cannot be used (missing, unsafe, corrupt, or not a dataset)."""


class TrainingError(FaceStudioError):
    """A training run cannot start or continue: a bad setting, a run folder that is not a run, a damaged checkpoint."""


class JobError(FaceStudioError):
    """A background job that does not exist, or an action its state does not allow (cancel a finished job...)."""
