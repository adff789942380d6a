"""One error hierarchy for the whole studio.

Every error a user can cause derives from `FaceStudioError`; its message is one sentence that names the file or
argument and the problem. The fronts (CLI, UI) turn these into an exit code or a `gr.Error`, and show a traceback
only when asked (`--debug`). Anything else that escapes is a bug.
"""

from __future__ import annotations


class FaceStudioError(Exception):
    """Base class of every error the studio reports to a user."""


class ImageLoadError(FaceStudioError):
    """A file could not be read as a usable image (missing, empty, truncated, not an image, too large)."""


class FaceNotFoundError(FaceStudioError):
    """An image in which a face was required has none (or not the one asked for)."""


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
