"""Known noise of the libraries underneath, kept out of normal output (`--debug` shows it all).

Two kinds: Python log records of the libraries (transformers' warning that it falls back to a PIL image processor
because torchvision is not installed, which is what FaceStudio wants; bitsandbytes' about a 4-bit kernel it never
uses), and the lines MediaPipe's native code (TFLite, absl logging) writes straight to file descriptor 2 from its
own threads, which no Python logger controls.
The CLI points descriptor 2 at the null device (`cli.main`); the long-running processes (the studio, a training
job) keep it, filtered line by line (`filter_native_stderr`), so real errors of native code still show.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

#: Substrings of native log lines that say nothing a user can act on.
NATIVE_NOISE = (
    "inference_feedback_manager.cc",  # "Feedback manager requires a model with a single signature inference"
    "landmark_projection_calculator.cc",  # "Using NORM_RECT without IMAGE_DIMENSIONS ..."
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "Created TensorFlow Lite XNNPACK delegate",
)
#: Substrings of Python log records dropped from the libraries' loggers.
LIBRARY_NOISE = (
    "requires torchvision (not installed); falling back",
    # bitsandbytes (imported by diffusers whenever it is installed) on a CPU with AVX512-BF16: an optional 4-bit
    # kernel from the Hub that FaceStudio never uses (its 8-bit optimizer does not need it).
    "Failed to load CPU gemm_4bit_forward from kernels-community",
)
_LIBRARY_LOGGERS = ("transformers", "transformers.utils.import_utils", "bitsandbytes.backends.cpu.ops")

_filtering = False
_lock = threading.Lock()


class _DropKnownNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in LIBRARY_NOISE)


def quiet_library_warnings() -> None:
    """Drop the known warnings of transformers and bitsandbytes (without importing them: the filter sits on their
    loggers)."""
    for name in _LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropKnownNoise) for f in logger.filters):
            logger.addFilter(_DropKnownNoise())


def is_native_noise(line: str) -> bool:
    return any(text in line for text in NATIVE_NOISE)


def filter_native_stderr() -> bool:
    """Route descriptor 2 through a pipe whose reader thread forwards every line to the real stderr except the
    known native noise; Python's own `sys.stderr` writes to the real stderr directly. Once per process; False
    where descriptor 2 cannot be redirected (embedded interpreters, some test runners)."""
    global _filtering
    with _lock:
        if _filtering:
            return True
        try:
            sys.stderr.flush()
            real = os.dup(2)
            read_end, write_end = os.pipe()
            os.dup2(write_end, 2)
            os.close(write_end)
            sys.stderr = os.fdopen(os.dup(real), "w", buffering=1, encoding=sys.stderr.encoding or "utf-8",
                                   errors="backslashreplace")
        except (OSError, ValueError, AttributeError):
            return False
        threading.Thread(target=_forward, args=(read_end, real), name="native-stderr", daemon=True).start()
        _filtering = True
        return True


def _forward(read_end: int, real: int) -> None:
    pending = b""
    while True:
        try:
            chunk = os.read(read_end, 65536)
        except OSError:
            return
        if not chunk:
            if pending and not is_native_noise(pending.decode("utf-8", "replace")):
                os.write(real, pending)
            return
        pending += chunk
        *lines, pending = pending.split(b"\n")
        kept = [line for line in lines if not is_native_noise(line.decode("utf-8", "replace"))]
        if kept:
            try:
                os.write(real, b"\n".join(kept) + b"\n")
            except OSError:
                return
