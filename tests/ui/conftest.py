"""The studio started as users start it (`app.create_studio` + `launch`) over the tiny random models, offline, in a
fresh FACESTUDIO_HOME; once per test session, shared by the API tests and the browser test."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class RunningStudio:
    url: str
    ctx: object  # facestudio.ui.context.StudioContext
    home: Path
    tiny: object  # tests.engine.tiny_models.TinyStudio

    def client(self):
        from gradio_client import Client

        return Client(self.url, verbose=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def studio(tiny_studio, faces_dir, tmp_path_factory):
    import app
    from facestudio.config import StudioSettings

    home = tmp_path_factory.mktemp("studio-home")
    saved = {key: os.environ.get(key) for key in ("GRADIO_ANALYTICS_ENABLED",)}
    os.environ.update(GRADIO_ANALYTICS_ENABLED="False")
    args = app.parse_args(["--device", "cpu", "--backend", "mediapipe", "--base-model", str(tiny_studio.base),
                           "--adapter", str(tiny_studio.adapter), "--face-encoder", str(tiny_studio.face_encoder)])
    ctx, demo = app.create_studio(args, StudioSettings(home=home, offline=True))
    ctx.start()
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **app.launch_options(args, ctx))
    try:
        yield RunningStudio(f"http://127.0.0.1:{port}/", ctx, home, tiny_studio)
    finally:
        ctx.stop()
        demo.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def wait_until(check, timeout: float, what: str, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def client(studio):
    """A gradio_client of the shared studio (one per test module)."""
    return studio.client()


@pytest.fixture(scope="module")
def photo(faces_dir):
    """A shared face photo as an upload: `photo("obama.jpg")`."""
    from gradio_client import handle_file

    return lambda name: handle_file(str(faces_dir / name))
