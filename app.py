"""FaceStudio's web UI: `python app.py` opens the studio in a browser tab (the Hugging Face Spaces entry).

A thin shim over `facestudio.ui.launch`, which `facestudio studio` runs too: the same flags (or FACESTUDIO_*
environment variables), the same studio. Nothing heavy is imported or loaded at start; models load on first use.
"""

from __future__ import annotations

from facestudio.ui.launch import (
    MAX_UPLOAD,
    auth_pairs,
    create_studio,
    launch_options,
    main,
    parse_args,
    parse_auth,
    share_warning,
)

__all__ = ["MAX_UPLOAD", "auth_pairs", "create_studio", "launch_options", "main", "parse_args", "parse_auth", "share_warning"]

if __name__ == "__main__":
    main()
