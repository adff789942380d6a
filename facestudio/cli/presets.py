"""`python -m facestudio presets import-facechain FOLDER`: FaceChain's style files as FaceStudio presets."""

from __future__ import annotations

import argparse
from pathlib import Path

from facestudio.errors import InvalidRequestError


def add_preset_commands(commands) -> None:
    presets = commands.add_parser("presets", help="style presets: import FaceChain's styles",
                                  description="Manage the style presets in FACESTUDIO_HOME/presets.")
    actions = presets.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    importer = actions.add_parser(
        "import-facechain", help="turn FaceChain style JSON files into presets",
        description="Convert every FaceChain style file under FOLDER into a preset in FACESTUDIO_HOME/presets "
                    "(key facechain-<file name>); its LoRA is a ModelScope reference, downloaded (size first) when "
                    "the preset is first used. Files that are not styles are skipped and named.")
    importer.add_argument("folder", type=Path, metavar="FOLDER", help="FaceChain's styles/ folder (or any folder)")
    importer.set_defaults(handler=run_import_facechain)


def run_import_facechain(args: argparse.Namespace) -> int:
    from facestudio.engine.facechain_styles import import_facechain_styles

    if not args.folder.is_dir():
        raise InvalidRequestError(f"{args.folder} is not a folder of FaceChain style files.")
    target = args.settings.home / "presets"
    report = import_facechain_styles(args.folder, target)
    for key in report.written:
        print(f"imported {key}")
    for problem in report.skipped:
        print(f"skipped: {problem}")
    print(f"{len(report.written)} preset(s) written to {target}, {len(report.skipped)} file(s) skipped.")
    return 0 if report.written or not report.skipped else 1
