"""The command line: `python -m facestudio <command> ...`.

A thin front: it parses arguments, calls the same functions the UI calls, prints results, and turns every
`FaceStudioError` into one sentence on stderr and a non-zero exit code. Tracebacks only with `--debug`.
The environment (`FACESTUDIO_HOME`, ...) is read once, here, into `args.settings` (a `StudioSettings`), which every
command passes down.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from facestudio import __version__
from facestudio.cli.options import add_face_backend_option
from facestudio.config import StudioSettings
from facestudio.errors import FaceStudioError

logger = logging.getLogger("facestudio")

EXIT_OK = 0
EXIT_USER_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3

#: Fields whose flag is not `--` + the field's name with dashes (errors name a request's field by its flag here).
FLAG_OF_FIELD = {"faces": "--face", "face_cfg": "--no-face-cfg", "mask_dilate_px": "--mask-dilate",
                 "mask_feather_px": "--mask-feather", "assignments": "--assign"}


def flag_of(field: str | None) -> str | None:
    """The command-line flag that sets a request or training field."""
    if field is None:
        return None
    return FLAG_OF_FIELD.get(field, "--" + field.replace("_", "-"))


def _silence_native_stderr() -> None:
    """MediaPipe/TFLite/dlib write log lines straight to file descriptor 2 from native threads. Point fd 2 at the
    null device and keep Python's `sys.stderr` on a duplicate of the real one, so users see only our messages."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        sys.stderr.flush()
        real_stderr = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        sys.stderr = os.fdopen(real_stderr, "w", buffering=1, encoding=sys.stderr.encoding or "utf-8",
                               errors="backslashreplace")
    except (OSError, ValueError, AttributeError):  # no real fd 2 (embedded interpreters, some test runners)
        pass


def build_parser(settings: StudioSettings | None = None) -> argparse.ArgumentParser:
    """The parser; every command's namespace carries `settings` (read from the environment when not given)."""
    parser = argparse.ArgumentParser(prog="python -m facestudio",
                                     description="FaceStudio: identity-preserving portraits with the FACT face adapter.")
    parser.set_defaults(settings=settings if settings is not None else StudioSettings.from_env())
    parser.add_argument("--version", action="version", version=f"facestudio {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logs")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    analyze = commands.add_parser("analyze", help="find faces, landmarks and regions in photos",
                                  description="Detect every face with its box, score and five landmarks.")
    analyze.add_argument("images", nargs="+", metavar="IMG", help="photo files (JPEG, PNG, WebP, ...)")
    analyze.add_argument("--json", action="store_true", help="print one JSON list with an object per photo")
    _add_backend_options(analyze)
    analyze.add_argument("--save-debug", metavar="DIR", type=Path,
                         help="write an overlay picture per photo (boxes, landmarks, face regions) into DIR")
    analyze.set_defaults(handler=run_analyze)

    similarity = commands.add_parser("similarity", help="how alike the faces in two photos are",
                                     description="Compare the identity of the largest (or chosen) face in A and B.")
    similarity.add_argument("image_a", metavar="A")
    similarity.add_argument("image_b", metavar="B")
    similarity.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_backend_options(similarity)
    similarity.add_argument("--embedder", "--identity", dest="embedder", choices=("auto", "arcface", "dlib"),
                            default="auto", help="identity embedding model: arcface (insightface pack on disk) or dlib "
                                                 "(offline); default auto (--identity is the older name)")
    similarity.add_argument("--face-index-a", type=int, default=None, metavar="I",
                            help="which face of A (0 = largest, the default)")
    similarity.add_argument("--face-index-b", type=int, default=None, metavar="I",
                            help="which face of B (0 = largest, the default)")
    similarity.set_defaults(handler=run_similarity)

    from facestudio.cli.generate import add_generation_commands
    from facestudio.cli.jobs import add_job_commands
    from facestudio.cli.presets import add_preset_commands
    from facestudio.cli.studio import add_studio_command
    from facestudio.cli.train import add_training_commands

    add_generation_commands(commands, _add_backend_options)
    add_training_commands(commands, _add_backend_options)
    add_job_commands(commands)
    add_studio_command(commands)
    add_preset_commands(commands)

    from facestudio.cli.evaluate import add_evaluate_command

    add_evaluate_command(commands, _add_backend_options)
    return parser


def _add_backend_options(parser: argparse.ArgumentParser) -> None:
    add_face_backend_option(parser)
    parser.add_argument("--min-face-px", type=int, default=30, metavar="N",
                        help="smallest face, in pixels across, the offline detector looks for (default 30)")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = StudioSettings.from_env()
        parser = build_parser(settings)  # the studio's flags default to FACESTUDIO_* variables too
    except FaceStudioError as err:  # a bad FACESTUDIO_* value: one sentence, before any command runs
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    args = parser.parse_args(argv)
    if not args.debug:
        _silence_native_stderr()
        from facestudio.noise import quiet_library_warnings

        quiet_library_warnings()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args) or EXIT_OK)
    except FaceStudioError as err:
        if args.debug:
            raise
        print(f"error: {err.worded(flag_of(err.field))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: not an error worth a message
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as err:  # a bug: say so in one line, keep the traceback for --debug
        if args.debug:
            raise
        print(f"internal error: {type(err).__name__}: {err} (run with --debug for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


# -- analyze --------------------------------------------------------------------------------------------------------


def run_analyze(args: argparse.Namespace) -> int:
    from facestudio.face import FaceAnalyzer, load_image

    analyzer = FaceAnalyzer(backend=args.backend, min_face_px=args.min_face_px,
                            insightface_root=args.settings.insightface_root)
    reports = []
    failed = False
    for path in args.images:
        report = {"image": path, "width": None, "height": None, "backend": analyzer.backend, "faces": [],
                  "error": None}
        try:
            image = load_image(path, max_pixels=args.settings.max_pixels)
            analysis = analyzer.analyze(image)
            report.update(analysis.to_dict())
            if args.save_debug:
                _save_debug(analyzer, image, analysis, path, args.save_debug)
        except FaceStudioError as err:
            if args.debug:
                raise
            report["error"] = str(err)
            failed = True
        reports.append(report)
        if not args.json:
            _print_report(report)
    if args.json:
        print(json.dumps(reports, indent=2))
    elif failed:
        print("error: some photos could not be analysed (see above).", file=sys.stderr)
    return EXIT_USER_ERROR if failed else EXIT_OK


def _print_report(report: dict) -> None:
    if report["error"]:
        print(f"{report['image']}: error: {report['error']}")
        return
    faces = report["faces"]
    print(f"{report['image']}: {report['width']}x{report['height']}, {len(faces)} face(s), backend {report['backend']}")
    for index, face in enumerate(faces):
        x0, y0, x1, y1 = (round(v) for v in face["bbox"])
        points = " ".join(f"({round(x)},{round(y)})" for x, y in face["kps"])
        print(f"  #{index}  box ({x0},{y0})-({x1},{y1})  {x1 - x0}x{y1 - y0}px  score {face['score']:.2f}  "
              f"eyes/nose/mouth {points}")


def _save_debug(analyzer, image, analysis, path: str, folder: Path) -> None:
    from facestudio.face.debug import draw_analysis

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FaceStudioError(f"Cannot create the debug folder {folder}: {err.strerror}.") from err
    parsings = [analyzer.parse(image, face) for face in analysis.faces[:16]]
    overlay = draw_analysis(image, analysis.faces, parsings)
    target = folder / f"{Path(path).stem}.faces.png"
    overlay.save(target)
    logger.info("wrote %s", target)


# -- similarity -----------------------------------------------------------------------------------------------------


def run_similarity(args: argparse.Namespace) -> int:
    from facestudio.face import FaceAnalyzer, load_image

    analyzer = FaceAnalyzer(backend=args.backend, embedder=args.embedder, min_face_px=args.min_face_px,
                            insightface_root=args.settings.insightface_root)
    image_a = load_image(args.image_a, max_pixels=args.settings.max_pixels)
    image_b = load_image(args.image_b, max_pixels=args.settings.max_pixels)
    result = analyzer.similarity(image_a, image_b, args.face_index_a, args.face_index_b,
                                 name_a=args.image_a, name_b=args.image_b)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        verdict = "the same person" if result.same_person else "different people"
        print(f"similarity {result.similarity:.3f} ({result.model}, threshold {result.threshold}): {verdict}")
    return EXIT_OK
