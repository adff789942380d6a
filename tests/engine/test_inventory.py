"""The Models tab's and `models` command's view: state of each model, and the machine."""

from __future__ import annotations

import subprocess
import sys

from facestudio.engine import ModelHub, ModelRegistry
from facestudio.engine.inventory import DOWNLOADED, LOADED, NOT_DOWNLOADED, model_states, system_report
from tests.conftest import REPO_ROOT


def test_states_follow_the_cache_and_what_is_loaded(tmp_path, tiny_studio):
    registry = ModelRegistry.default()
    hub = ModelHub(tmp_path, offline=True)
    rows = {row.name: row for row in model_states(registry, hub)}
    assert set(rows) == set(registry.records) and all(r.state == NOT_DOWNLOADED for r in rows.values())
    assert {name for name, row in rows.items() if row.default} == set(registry.defaults.values())

    class CachedHub(ModelHub):
        def cached_path(self, record):
            return tmp_path if record.key == "openpose" else None

    loaded = ["base_model:majicmix", f"fact_adapter:{tiny_studio.adapter}"]
    rows = {row.name: row for row in model_states(registry, CachedHub(tmp_path, offline=True), loaded)}
    assert rows["majicmix"].state == LOADED and rows["openpose"].state == DOWNLOADED
    assert rows[tiny_studio.adapter.name].state == LOADED and rows[tiny_studio.adapter.name].source == "local"
    assert rows[tiny_studio.adapter.name].size_bytes == tiny_studio.adapter.stat().st_size


def test_system_report_names_memory_and_versions():
    report = system_report("cpu")
    assert report["device"] == "cpu" and 0 < report["ram_used_bytes"] <= report["ram_total_bytes"]
    assert report["versions"]["diffusers"] and report["versions"]["facestudio"]


def test_reading_an_empty_cache_imports_neither_torch_nor_modelscope(tmp_path):
    code = ("import sys; from pathlib import Path; from facestudio.engine.hub import ModelHub; "
            "from facestudio.engine.registry import ModelRegistry; from facestudio.engine.inventory import "
            "model_states; model_states(ModelRegistry.default(), ModelHub(Path(sys.argv[1]), offline=True)); "
            "print('torch' in sys.modules, 'modelscope' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO_ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "False"]


def test_local_model_files_are_found_and_classified(tmp_path):
    import torch
    from safetensors.torch import save_file

    from facestudio.engine.inventory import LOCAL, local_models, local_models_dir

    local = local_models_dir(tmp_path)
    (local / "my-base" / "unet").mkdir(parents=True)
    (local / "fact_adapter").mkdir()
    (local / "ms1mv2_model_TransFace_S.pt").write_bytes(b"x" * 10)
    save_file({"model.diffusion_model.out.weight": torch.zeros(2)}, str(local / "single-file.safetensors"))
    save_file({"down_blocks.0.attentions.0.processor.to_k.weight": torch.zeros(2)}, str(local / "adapter.safetensors"))
    save_file({"x": torch.zeros(2)}, str(local / "fact_adapter" / "named-by-its-folder.safetensors"))
    (local / "notes.txt").write_text("not a model")
    found = {model.name: model.kind for model in local_models(tmp_path)}
    assert found == {"my-base": "base_model", "ms1mv2_model_TransFace_S.pt": "face_encoder",
                     "single-file.safetensors": "base_model", "adapter.safetensors": "fact_adapter",
                     "fact_adapter/named-by-its-folder.safetensors": "fact_adapter"}

    registry = ModelRegistry.default()
    rows = {row.name: row for row in model_states(registry, ModelHub(tmp_path, offline=True),
                                                  [f"fact_adapter:{local / 'adapter.safetensors'}"],
                                                  local_models(tmp_path))}
    assert rows["my-base"].state == LOCAL and rows["my-base"].source == "models/local"
    assert rows["adapter.safetensors"].state == LOADED  # loaded from models/local: one row, not two
    assert sum(row.path == str(local / "adapter.safetensors") for row in rows.values()) == 1
