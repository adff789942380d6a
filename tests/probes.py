"""Code run in a fresh interpreter: what a test must measure away from this process's state (the trainer's allocator
setting, applied by tests that train here, keeps freed memory resident for the rest of the process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_probe(code: str, *args: str, **env: str) -> dict:
    """Run `code` with `args` in a new Python with glibc's default allocator (no `MALLOC_*` variable but those in
    `env`), from the repository's root; return the JSON object its last printed line holds."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    environment.update(env)
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO_ROOT,
                          env=environment, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])
