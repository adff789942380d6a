"""`facestudio studio [flags]`: the web studio, exactly as `python app.py` starts it (the same flags and
FACESTUDIO_* variables, through `facestudio.ui.launch`), from any folder once the package is installed."""

from __future__ import annotations

import argparse
import logging


def add_studio_command(commands) -> None:
    from facestudio.ui.launch import DESCRIPTION, add_studio_options

    studio = commands.add_parser("studio", help="start the web studio (the same as python app.py)",
                                 description=DESCRIPTION)
    add_studio_options(studio)
    # SUPPRESS: without the flag here, `facestudio --debug studio` keeps the top-level value.
    studio.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="log details and tracebacks")
    studio.set_defaults(handler=run_studio)


def run_studio(args: argparse.Namespace) -> int:
    from facestudio.ui.launch import serve

    # `main` logs warnings only; the studio reports what it does (engine ready, models loaded), as app.py does.
    logging.getLogger().setLevel(logging.DEBUG if args.debug else logging.INFO)
    serve(args, args.settings)
    return 0
