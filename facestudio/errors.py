"""One error hierarchy for the whole studio.

Every error a user can cause derives from `FaceStudioError`; its message is one sentence that names the file or
argument and the problem. The fronts (CLI, UI) turn these into an exit code or a `gr.Error`, and show a traceback
only when asked (`--debug`). Anything else that escapes is a bug.
"""

from __future__ import annotations


class FaceStudioError(Exception):
    """Base class of every error the studio reports to a user."""


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
        super().__init__(message)
        self.missing = list(missing or [])
        self.unexpected = list(unexpected or [])
        self.mismatched = list(mismatched or [])


class UnsafeCheckpointError(CheckpointError):
    """A pickled checkpoint would need arbitrary code execution to load; it is refused."""


class InvalidRequestError(FaceStudioError, ValueError):
    """A generation request has an argument out of range or a combination that cannot work."""


class UnknownModelError(FaceStudioError):
    """A model name is neither in the registry, nor an existing file or folder, nor a hub id."""

    def __init__(self, message: str, key: str = "", known: list[str] | None = None):
        super().__init__(message)
        self.key = key
        self.known = list(known or [])


class ModelNotAvailableError(FaceStudioError):
    """A model is not on disk and cannot be downloaded now (offline, no network, or downloads not allowed)."""


class DownloadError(FaceStudioError):
    """A download started but failed (network, disk, hub error); what was fetched stays for a resume."""


class InsufficientVRAMError(FaceStudioError):
    """The accelerator ran out of memory; the memory was freed and the message suggests a lighter setting."""

    def __init__(self, message: str, needed_bytes: int | None = None, free_bytes: int | None = None):
        super().__init__(message)
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
