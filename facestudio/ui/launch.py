"""Starting the studio: its flags (each also a FACESTUDIO_* variable), the share warning, building the page and
serving it. `python app.py` (the Hugging Face Spaces entry) and `facestudio studio` both come here, so they start
the same studio.

Nothing heavy is imported to read the flags: `--help` is instant, and models load on first use, not at start.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

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
    parser.add_argument("--auth", action=_AuthPairs, metavar="USER:PASS[,USER:PASS...]",
                        help="require a login: these user names and passwords (repeatable; FACESTUDIO_AUTH, pairs "
                             "separated by commas). Each user gets a workspace of their own unless --shared-workspace",
                        default=[env("FACESTUDIO_AUTH")] if env("FACESTUDIO_AUTH") else None)
    parser.add_argument("--auth-file", default=env("FACESTUDIO_AUTH_FILE") or None, metavar="FILE",
                        help="more USER:PASS logins, one per line ('#' starts a comment; a password may hold any "
                             "character) (FACESTUDIO_AUTH_FILE)")
    parser.add_argument("--shared-workspace", action="store_true", default=env_flag("FACESTUDIO_SHARED_WORKSPACE"),
                        help="with --auth: every user sees every identity, job and result (without it each user "
                             "sees only their own) (FACESTUDIO_SHARED_WORKSPACE=1)")
    add_device_options(parser, env_defaults=True)
    parser.add_argument("--base-model", default=env("FACESTUDIO_BASE_MODEL") or None, metavar="ID|PATH",
                        help="base model offered first: registry name, diffusers folder, single file or hub id "
                             "(FACESTUDIO_BASE_MODEL; default: the registry's default)")
    parser.add_argument("--adapter", default=env("FACESTUDIO_ADAPTER") or None, metavar="ID|PATH",
                        help="FACT adapter offered besides the registry's (FACESTUDIO_ADAPTER)")
    parser.add_argument("--face-encoder", default=env("FACESTUDIO_FACE_ENCODER") or None, metavar="ID|PATH",
                        help="TransFace face encoder (FACESTUDIO_FACE_ENCODER; default: the registry's)")
    parser.add_argument("--pose-controlnet", "--controlnet", dest="controlnet",
                        default=env("FACESTUDIO_POSE_CONTROLNET") or None, metavar="ID|PATH",
                        help="OpenPose ControlNet for poses and release inpainting (FACESTUDIO_POSE_CONTROLNET; "
                             "default: the registry's)")
    parser.add_argument("--canny-controlnet", default=env("FACESTUDIO_CANNY_CONTROLNET") or None, metavar="ID|PATH",
                        help="Canny ControlNet of release inpainting (FACESTUDIO_CANNY_CONTROLNET; default: the "
                             "registry's)")
    parser.add_argument("--clip-model", default=env("FACESTUDIO_CLIP_MODEL") or None, metavar="ID|PATH",
                        help="CLIP model of Compare strengths' prompt-following score (FACESTUDIO_CLIP_MODEL; default: "
                             "the registry's clip-vit-l14 when it is on disk; the page never downloads it unasked)")
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


class _AuthPairs(argparse.Action):
    """`--auth` may be given several times; the first one on the command line replaces FACESTUDIO_AUTH's pairs (a
    flag wins over its variable)."""

    def __call__(self, parser, namespace, values, option_string=None):
        current = getattr(namespace, self.dest, None)
        given = [] if current is None or current is self.default else list(current)
        setattr(namespace, self.dest, [*given, values])


def parse_auth(text: str | list[str] | None, file: str | os.PathLike | None = None) -> list[tuple[str, str]] | None:
    """The logins of `--auth` (each value one or more USER:PASS pairs separated by commas) and `--auth-file` (one
    pair per line): a list of (user, password) for gradio, or `None` when no login is required."""
    values = [text] if isinstance(text, str) else list(text or [])
    pairs = [part for value in values if value for part in str(value).split(",") if part.strip()]
    if file:
        try:
            lines = Path(file).expanduser().read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise SystemExit(f"error: --auth-file {Path(file).name} cannot be read ({type(err).__name__}).") from None
        pairs += [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    logins: dict[str, str] = {}
    for pair in pairs:
        user, sep, password = pair.strip().partition(":")
        if not sep or not user or not password:
            raise SystemExit("error: --auth must be USER:PASS, both non-empty (several: USER:PASS,USER:PASS).")
        if logins.get(user, password) != password:
            raise SystemExit(f"error: --auth gives the user {user!r} two passwords.")
        logins[user] = password
    return list(logins.items()) or None


def auth_pairs(args: argparse.Namespace) -> list[tuple[str, str]] | None:
    """The logins the studio's flags ask for (`--auth`, `--auth-file`)."""
    return parse_auth(getattr(args, "auth", None), getattr(args, "auth_file", None))


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def share_warning(share: bool, auth: tuple[str, str] | list[tuple[str, str]] | None,
                  host: str = "127.0.0.1") -> str | None:
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
    from facestudio.ui.studio import STUDIO_CSS

    return {"max_file_size": MAX_UPLOAD, "allowed_paths": ctx.served_dirs(), "css": STUDIO_CSS,
            "app_kwargs": {"middleware": [Middleware(LoginGuard, logins=logins)]}}


def create_studio(args: argparse.Namespace, settings: StudioSettings | None = None):
    """The context and the page for these options and settings (read from the environment when not given; the tests
    build the studio through this too)."""
    from facestudio.ui.context import StudioContext, StudioOptions
    from facestudio.ui.studio import build_studio

    users = tuple(user for user, _ in auth_pairs(args) or ())
    options = StudioOptions(
        settings=settings or StudioSettings.from_env(), device=args.device, dtype=args.dtype, low_vram=args.low_vram, attention=args.attention,
        base_model=args.base_model, adapter=args.adapter, face_encoder=args.face_encoder,
        controlnet=getattr(args, "controlnet", None), canny_controlnet=getattr(args, "canny_controlnet", None),
        clip_model=getattr(args, "clip_model", None),
        backend=args.backend, allow_download=not args.no_download, run_jobs=not args.no_jobs, users=users,
        shared_workspace=bool(getattr(args, "shared_workspace", False)))
    ctx = StudioContext(options)
    return ctx, build_studio(ctx)


def serve(args: argparse.Namespace, settings: StudioSettings) -> None:
    """Build the studio for these options and serve it until it is stopped. A `FaceStudioError` while building it
    propagates: each front words it (app.py exits with it, the command line prints it with its exit code)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    auth = auth_pairs(args)
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
