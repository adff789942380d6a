"""The command line's start: a missing input file fails before any hub is asked, `download` without a network is one
sentence, and the libraries' known noise stays out of normal output (real subprocesses)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import REPO_ROOT


class Listener:
    """A local TCP port standing in for both hubs (HF_ENDPOINT, MODELSCOPE_DOMAIN): counts who connects."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def settled(self, expected: int) -> int:
        """The connections counted once the accepting thread has caught up with the kernel's backlog (waiting up to
        5 s for `expected` of them, then a little longer for any more)."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self.connections < expected:
            time.sleep(0.1)
        time.sleep(0.5)
        return self.connections

    def env(self) -> dict[str, str]:
        return {"HF_ENDPOINT": f"http://127.0.0.1:{self.port}", "MODELSCOPE_DOMAIN": f"127.0.0.1:{self.port}"}


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.sock.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cli(home, cwd, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    base = {key: value for key, value in os.environ.items()
            if key not in ("HF_HUB_OFFLINE", "FACESTUDIO_OFFLINE", "HF_ENDPOINT", "MODELSCOPE_DOMAIN")}
    return subprocess.run([sys.executable, "-m", "facestudio", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env={**base, "FACESTUDIO_HOME": str(home), "PYTHONPATH": str(REPO_ROOT), **env})


def test_the_probe_asks_the_hub_the_environment_names(listener, tmp_path, monkeypatch):
    from facestudio.engine.hub import ModelHub

    for key, value in listener.env().items():
        monkeypatch.setenv(key, value)
    hub = ModelHub(tmp_path)
    assert hub.reachable("modelscope") and hub.reachable("huggingface")
    assert listener.settled(2) == 2  # so the CLI test below, which sees none, would see one if it asked
    assert not ModelHub(tmp_path, offline=True).reachable("modelscope") and listener.settled(2) == 2


@pytest.mark.parametrize("command", ["generate", "inpaint"])
def test_a_missing_photo_fails_before_any_hub_is_asked(listener, tmp_path, faces_dir, command):
    extra = ["--image", str(faces_dir / "biden.jpg")] if command == "inpaint" else []
    result = run_cli(tmp_path / "home", tmp_path, listener.env(), command, "--face", "me.jpg", "--prompt", "x",
                     "--out", "out", *extra)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: me.jpg does not exist."
    assert result.stdout == "" and listener.settled(0) == 0
    assert not (tmp_path / "home" / "models").exists()


def test_download_without_a_network_is_one_sentence(tmp_path):
    port = closed_port()
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{port}", "MODELSCOPE_DOMAIN": f"127.0.0.1:{port}"}
    result = run_cli(tmp_path / "home", tmp_path, env, "download", "--yes")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: ModelScope cannot be reached from this machine, so nothing was downloaded; copy the model files "
        f"into {tmp_path / 'home' / 'models' / 'local'} instead (the README's Models section says how)."]
    assert "majicmix" in result.stdout and "about 2.1 GB" in result.stdout  # the sizes, from the registry

    offline = run_cli(tmp_path / "home", tmp_path, {"FACESTUDIO_OFFLINE": "1"}, "download", "fact-film", "--yes")
    assert offline.returncode == 1
    lines = offline.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: downloads are off")
    assert "facestudio download" not in offline.stderr  # not the command that just failed


NOISY = """
import logging, os, sys, time
if sys.argv[1] == "quiet":
    from facestudio.noise import filter_native_stderr, quiet_library_warnings
    filter_native_stderr()
    quiet_library_warnings()
logging.basicConfig()
from facestudio.face import FaceAnalyzer, load_image
FaceAnalyzer(backend="mediapipe").analyze(load_image(sys.argv[2]))
import transformers
transformers.CLIPImageProcessor
try:
    import bitsandbytes  # (optional) warns about a 4-bit kernel on CPUs with AVX512-BF16 (this machine's)
except ImportError:
    pass
os.write(2, b"a real native error\\n")
print("a python warning", file=sys.stderr)
time.sleep(0.3)  # the forwarding thread writes the last lines
"""


def test_known_library_noise_is_filtered_and_the_rest_kept(faces_dir):
    def stderr(mode: str) -> str:
        return subprocess.run([sys.executable, "-c", NOISY, mode, str(faces_dir / "obama.jpg")], capture_output=True,
                              text=True, timeout=300, cwd=REPO_ROOT).stderr

    loud, quiet = stderr("loud"), stderr("quiet")
    for noise in ("inference_feedback_manager", "requires torchvision"):
        assert noise in loud and noise not in quiet
    assert "gemm_4bit_forward" not in quiet  # (in `loud` only on CPUs with AVX512-BF16)
    for kept in ("a real native error", "a python warning"):
        assert kept in loud and kept in quiet
