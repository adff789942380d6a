"""Quiet model libraries: diffusers and transformers print loading bars and advice that would flood a terminal or
the studio's log; the fronts show their own progress (tqdm bars, the page's progress) instead."""

from __future__ import annotations


def quiet_model_libraries() -> None:
    """Errors only, no progress bars, from diffusers and transformers (imports both: call it when the engine
    starts, not at import)."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
