"""FaceStudio's web UI: `python app.py` opens the studio in a browser tab (also the Hugging Face Spaces entry).

A thin front: it reads the options (flags or FACESTUDIO_* environment variables) and the studio's settings
(`StudioSettings.from_env()`: home, offline, limits), builds the page from `facestudio.ui` and launches it. Nothing
heavy is imported or loaded at start; models load on first use.
"""

from __future__ import annotations

import argparse
import logging
import os

from facestudio.config import StudioSettings, parse_flag

logger = logging.getLogger("facestudio.app")

#: Uploads larger than this are refused by the server before they reach the studio.
MAX_UPLOAD = "25mb"


def _env_flag(name: str) -> bool:
    return parse_flag(name, os.environ.get(name))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        description="Start the FaceStudio web UI. Every flag can also be set as the FACESTUDIO_* environment "
                    "variable named in its help.")
    parser.add_argument("--host", default=env("FACESTUDIO_HOST", "127.0.0.1"),
                        help="address to listen on (FACESTUDIO_HOST; default 127.0.0.1, 0.0.0.0 for the network)")
    parser.add_argument("--port", type=int, default=int(env("FACESTUDIO_PORT", "7860")),
                        help="port (FACESTUDIO_PORT; default 7860)")
    parser.add_argument("--share", action="store_true", default=_env_flag("FACESTUDIO_SHARE"),
                        help="also publish a temporary public gradio.live link (FACESTUDIO_SHARE=1)")
    parser.add_argument("--auth", default=env("FACESTUDIO_AUTH"), metavar="USER:PASS",
                        help="require this user name and password (FACESTUDIO_AUTH)")
    parser.add_argument("--device", default=env("FACESTUDIO_DEVICE", "auto"),
                        help="auto (CUDA, then Apple MPS, then CPU), cuda, cuda:1, mps or cpu (FACESTUDIO_DEVICE)")
    parser.add_argument("--dtype", default=env("FACESTUDIO_DTYPE", "auto"), choices=("auto", "fp16", "bf16", "fp32"),
                        help="precision (FACESTUDIO_DTYPE; default fp16 on a GPU, fp32 on the CPU)")
    parser.add_argument("--low-vram", action="store_true", default=_env_flag("FACESTUDIO_LOW_VRAM"),
                        help="keep idle models in RAM and decode in tiles, for GPUs under 6 GB (FACESTUDIO_LOW_VRAM=1)")
    parser.add_argument("--attention", default=env("FACESTUDIO_ATTENTION", "auto"),
                        choices=("auto", "sdpa", "xformers", "sliced"), help="attention kernels (FACESTUDIO_ATTENTION)")
    parser.add_argument("--base-model", default=env("FACESTUDIO_BASE_MODEL") or None, metavar="ID|PATH",
                        help="base model offered first: registry name, diffusers folder, single file or hub id "
                             "(FACESTUDIO_BASE_MODEL; default: the registry's default)")
    parser.add_argument("--adapter", default=env("FACESTUDIO_ADAPTER") or None, metavar="ID|PATH",
                        help="FACT adapter offered besides the registry's (FACESTUDIO_ADAPTER)")
    parser.add_argument("--face-encoder", default=env("FACESTUDIO_FACE_ENCODER") or None, metavar="ID|PATH",
                        help="TransFace face encoder (FACESTUDIO_FACE_ENCODER; default transface-s)")
    parser.add_argument("--backend", default=env("FACESTUDIO_FACE_BACKEND", "auto"),
                        choices=("auto", "mediapipe", "insightface"),
                        help="face detector (FACESTUDIO_FACE_BACKEND; default auto)")
    parser.add_argument("--no-download", action="store_true", default=_env_flag("FACESTUDIO_NO_DOWNLOAD"),
                        help="never download models; use only the cache (FACESTUDIO_NO_DOWNLOAD=1)")
    parser.add_argument("--no-jobs", action="store_true", default=_env_flag("FACESTUDIO_NO_JOBS"),
                        help="do not run training jobs in this studio (another studio or `python -m facestudio jobs "
                             "run` does) (FACESTUDIO_NO_JOBS=1)")
    parser.add_argument("--debug", action="store_true", help="log details and tracebacks")
    return parser.parse_args(argv)


def parse_auth(text: str | None) -> tuple[str, str] | None:
    if not text:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise SystemExit("error: --auth must be USER:PASS, both non-empty.")
    return user, password


def share_warning(share: bool, auth: tuple[str, str] | None) -> str | None:
    """What to say when a public link is opened without a password."""
    if share and auth is None:
        return ("--share without --auth: anyone with the public link can use this studio, its files and its GPU; "
                "add --auth USER:PASS.")
    return None


def create_studio(args: argparse.Namespace, settings: StudioSettings | None = None):
    """The context and the page for these options and settings (default: read from the environment); the tests
    build the studio through this too."""
    from facestudio.ui.context import StudioContext, StudioOptions
    from facestudio.ui.studio import build_studio

    settings = settings if settings is not None else StudioSettings.from_env()
    options = StudioOptions(
        settings=settings, device=args.device, dtype=args.dtype, low_vram=args.low_vram, attention=args.attention,
        base_model=args.base_model, adapter=args.adapter, face_encoder=args.face_encoder, backend=args.backend,
        allow_download=not args.no_download, run_jobs=not args.no_jobs)
    ctx = StudioContext(options)
    return ctx, build_studio(ctx)


def main(argv: list[str] | None = None) -> None:
    from facestudio.errors import FaceStudioError

    try:
        args = parse_args(argv)
        settings = StudioSettings.from_env()  # once, here; everything below gets it passed
    except FaceStudioError as err:  # a bad FACESTUDIO_* value
        raise SystemExit(f"error: {err}") from None
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    auth = parse_auth(args.auth)
    warning = share_warning(args.share, auth)
    if warning:
        logger.warning(warning)

    try:
        ctx, demo = create_studio(args, settings)
    except FaceStudioError as err:
        raise SystemExit(f"error: {err}") from None
    ctx.start()
    try:
        from facestudio.ui.studio import THEME

        demo.launch(server_name=args.host, server_port=args.port, share=args.share, auth=auth,
                    max_file_size=MAX_UPLOAD, allowed_paths=ctx.served_dirs(), show_error=True, theme=THEME)
    finally:
        ctx.stop()


if __name__ == "__main__":
    main()
