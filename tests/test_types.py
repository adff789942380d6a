"""The type checker holds: mypy, as configured in pyproject.toml (`[tool.mypy]`, which names the checked packages),
reports no error. Run alone with `mypy` from the repository root."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None,
                    reason="mypy is not installed (pip install -r requirements-dev.txt)")
def test_mypy_is_clean_on_the_configured_packages():
    # No arguments: the files come from pyproject.toml. The cache in .mypy_cache makes later runs take seconds.
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPO_ROOT, capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"mypy found problems:\n{output}"
    assert "Success: no issues found" in output, output
