"""Starting the studio: its flags (each also a FACESTUDIO_* variable), the share warning, building the page and
serving it. `python app.py` (the Hugging Face Spaces entry) and `facestudio studio` both come here, so they start
the same studio.

Nothing heavy is imported to read the flags: `--help` is instant, and models load on first use, not at start.
"""

from __future__ import annotations

import argparse
import logging
import os

from facestudio.cli.options import add_device_options, add_face_backend_option, env_flag
from facestudio.config import StudioSettings

logger = logging.getLogger("facestudio.app")

#: Uploads larger than this are refused by the server before they reach the studio.
MAX_UPLOAD = "25mb"
DESCRIPTION = ("Start the FaceStudio web UI. Every flag can also be set as the FACESTUDIO_* environment variable "
               "named in its help.")


def add_studio_options(parser: argparse.ArgumentParser) -> None:
    """The studio's flags, each defaulting to its FACESTUDIO_* variable (all but --debug, which each front owns)."""
    env = os.environ.get
    parser.add_argument("--host", default=env("FACESTUDIO_HOST", "127.0.0.1"),
                        help="address to listen on (FACESTUDIO_HOST; default 127.0.0.1, 0.0.0.0 for the network)")
    parser.add_argument("--port", type=int, default=int(env("FACESTUDIO_PORT", "7860")),
                        help="port (FACESTUDIO_PORT; default 7860)")
    parser.add_argument("--share", action="store_true", default=env_flag("FACESTUDIO_SHARE"),
                        help="also publish a temporary public gradio.live link (FACESTUDIO_SHARE=1)")
    parser.add_argument("--auth", default=env("FACESTUDIO_AUTH"), metavar="USER:PASS",
                        help="require this user name and password (FACESTUDIO_AUTH)")
    add_device_options(parser, env_defaults=True)
    parser.add_argument("--base-model", default=env("FACESTUDIO_BASE_MODEL") or None, metavar="ID|PATH",
                        help="base model offered first: registry name, diffusers folder, single file or hub id "
                             "(FACESTUDIO_BASE_MODEL; default: the registry's default)")
    parser.add_argument("--adapter", default=env("FACESTUDIO_ADAPTER") or None, metavar="ID|PATH",
                        help="FACT adapter offered besides the registry's (FACESTUDIO_ADAPTER)")
    parser.add_argument("--face-encoder", default=env("FACESTUDIO_FACE_ENCODER") or None, metavar="ID|PATH",
                        help="TransFace face encoder (FACESTUDIO_FACE_ENCODER; default: the registry's)")
    add_face_backend_option(parser, env_defaults=True)
    parser.add_argument("--login-attempts", type=int, default=int(env("FACESTUDIO_LOGIN_ATTEMPTS", "10")),
                        metavar="N", help="with --auth: wrong passwords from one address before it is locked out "
                                          "(FACESTUDIO_LOGIN_ATTEMPTS; default 10)")
    parser.add_argument("--login-lockout", type=float, default=float(env("FACESTUDIO_LOGIN_LOCKOUT", "600")),
                        metavar="SECONDS", help="with --auth: how long a locked-out address is refused, even with "
                                                "the right password (FACESTUDIO_LOGIN_LOCKOUT; default 600)")
    parser.add_argument("--no-jobs", action="store_true", default=env_flag("FACESTUDIO_NO_JOBS"),
                        help="do not run training jobs in this studio (another studio or `python -m facestudio jobs "
                             "run` does) (FACESTUDIO_NO_JOBS=1)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    add_studio_options(parser)
    parser.add_argument("--debug", action="store_true", help="log details and tracebacks")
    return parser.parse_args(argv)


def parse_auth(text: str | None) -> tuple[str, str] | None:
    if not text:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise SystemExit("error: --auth must be USER:PASS, both non-empty.")
    return user, password


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def share_warning(share: bool, auth: tuple[str, str] | None, host: str = "127.0.0.1") -> str | None:
    """What to say when the studio is opened beyond this machine (a public link, or a network address) without a
    password."""
    if auth is not None:
        return None
    if share:
        return ("--share without --auth: anyone with the public link can use this studio, its files and its GPU; "
                "add --auth USER:PASS.")
    if host not in LOOPBACK and not host.startswith("127."):
        return (f"--host {host} without --auth: anyone who can reach this machine can use this studio, its files "
                "and its GPU; add --auth USER:PASS.")
    return None


def launch_options(args: argparse.Namespace, ctx) -> dict:
    """What `demo.launch` gets besides the address: upload limit, no served folders, the login guard. The tests
    start the studio with these too."""
    from starlette.middleware import Middleware

    from facestudio.ui.guard import FailedLogins, LoginGuard

    logins = FailedLogins(max(1, int(getattr(args, "login_attempts", 10))),
                          max(0.0, float(getattr(args, "login_lockout", 600.0))))
    return {"max_file_size": MAX_UPLOAD, "allowed_paths": ctx.served_dirs(),
            "app_kwargs": {"middleware": [Middleware(LoginGuard, logins=logins)]}}


def create_studio(args: argparse.Namespace, settings: StudioSettings | None = None):
    """The context and the page for these options and settings (read from the environment when not given; the tests
    build the studio through this too)."""
    from facestudio.ui.context import StudioContext, StudioOptions
    from facestudio.ui.studio import build_studio

    options = StudioOptions(
        settings=settings or StudioSettings.from_env(), device=args.device, dtype=args.dtype, low_vram=args.low_vram, attention=args.attention,
        base_model=args.base_model, adapter=args.adapter, face_encoder=args.face_encoder, backend=args.backend,
        allow_download=not args.no_download, run_jobs=not args.no_jobs)
    ctx = StudioContext(options)
    return ctx, build_studio(ctx)


def serve(args: argparse.Namespace, settings: StudioSettings) -> None:
    """Build the studio for these options and serve it until it is stopped. A `FaceStudioError` while building it
    propagates: each front words it (app.py exits with it, the command line prints it with its exit code)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    auth = parse_auth(args.auth)
    warning = share_warning(args.share, auth, args.host)
    if warning:
        logger.warning(warning)
    ctx, demo = create_studio(args, settings)
    ctx.start()
    try:
        from facestudio.ui.studio import THEME

        demo.launch(server_name=args.host, server_port=args.port, share=args.share, auth=auth, show_error=True,
                    theme=THEME, **launch_options(args, ctx))
    finally:
        ctx.stop()


def main(argv: list[str] | None = None) -> None:
    """`python app.py [flags]`."""
    from facestudio.errors import FaceStudioError

    try:
        args = parse_args(argv)
        settings = StudioSettings.from_env()  # once, here; everything below gets it passed
        if not args.debug:  # the libraries' known noise (facestudio/noise.py) stays out of the studio's log
            from facestudio.noise import filter_native_stderr, quiet_library_warnings

            filter_native_stderr()
            quiet_library_warnings()
        logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                            format="%(levelname)s %(name)s: %(message)s")
        serve(args, settings)
    except FaceStudioError as err:
        flag = None if err.field is None else "--" + err.field.replace("_", "-")
        raise SystemExit(f"error: {err.worded(flag)}") from None
