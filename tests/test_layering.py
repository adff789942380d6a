"""Dependencies point one way: face → fact → engine → training/jobs → fronts. Checked here, not left to review."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "facestudio"
ORDER = ["face", "fact", "engine", "training", "jobs"]
FRONTS = {"cli", "__main__", "app", "ui"}
# Heavy or UI libraries each layer must not import (torch has no place in face analysis; gradio only in the web
# front: app.py and facestudio/ui).
FORBIDDEN = {
    "face": {"torch", "diffusers", "transformers", "accelerate", "gradio"},
    "fact": {"gradio", "diffusers.pipelines", "transformers", "accelerate"},
    # `jobs list` and the UI's job table read run folders without loading torch or a model.
    "jobs": {"torch", "diffusers", "transformers", "accelerate", "gradio", "facestudio.engine"},
}


def imports_of(source: str, filename: str = "<source>") -> set[str]:
    tree = ast.parse(source, filename=filename)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def layer_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def python_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def violations(path: Path, source: str) -> list[str]:
    """What in `source` (the file at `path` in the package) breaks the layering, one message each."""
    layer = layer_of(path)
    found = []
    for name in sorted(imports_of(source, str(path))):
        if name.startswith("facestudio."):
            target = name.split(".")[1]
            if layer not in FRONTS and target in FRONTS:
                found.append(f"{path.name} imports the front {name}")
            if layer in ORDER and target in ORDER and ORDER.index(target) > ORDER.index(layer):
                found.append(f"{path.name} ({layer}) imports upward: {name}")
        for banned in FORBIDDEN.get(layer, ()):
            if name == banned or name.startswith(banned + "."):
                found.append(f"{path.name} ({layer}) imports {name}")
        if (name == "gradio" or name.startswith("gradio.")) and layer != "ui":
            found.append(f"{path.name} imports gradio; only the web front (facestudio/ui) may")
    return found


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_no_upward_or_forbidden_imports(path):
    assert violations(path, path.read_text()) == []


@pytest.mark.parametrize(("where", "source", "expected"), [
    ("face/bad.py", "import torch\n", "(face) imports torch"),
    ("fact/bad.py", "from facestudio.engine import Engine\n", "(fact) imports upward: facestudio.engine"),
    ("engine/bad.py", "import gradio as gr\n", "imports gradio"),
    ("jobs/bad.py", "from facestudio.engine.manager import ModelManager\n", "(jobs) imports facestudio.engine"),
    ("training/bad.py", "from facestudio.ui.context import StudioContext\n", "imports the front facestudio.ui"),
])
def test_the_layer_check_reports_a_planted_violation(where, source, expected):
    found = violations(PACKAGE / where, source)
    assert any(expected in message for message in found), found
    assert violations(PACKAGE / where, "import json\nfrom facestudio.errors import FaceStudioError\n") == []


# `fact` is held tighter than "no upward imports": torch, safetensors, diffusers' model code and our own errors only.
FACT_ALLOWED_ROOTS = {"torch", "safetensors", "__future__"}
FACT_ALLOWED_PREFIXES = ("diffusers.models", "facestudio.errors", "facestudio.fact")


def test_fact_imports_only_torch_safetensors_and_diffusers_models():
    offending = []
    for path in sorted((PACKAGE / "fact").glob("*.py")):
        for name in imports_of(path.read_text(), str(path)):
            root = name.split(".")[0]
            if root in sys.stdlib_module_names or root in FACT_ALLOWED_ROOTS or name.startswith(FACT_ALLOWED_PREFIXES):
                continue
            offending.append(f"{path.name}: {name}")
    assert offending == []
