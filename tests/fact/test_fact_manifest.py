"""Names and shapes of the released files (../shared/fact/fact_manifest.json) against full-size modules built on
the meta device: no weights are downloaded and nothing of the real size is allocated."""

from __future__ import annotations

import pytest
import torch

from facestudio.errors import CheckpointMismatchError
from facestudio.fact import FACTAdapter, TransFace, TransFaceConfig


def _shapes(state_dict) -> dict[str, list[int]]:
    return {name: list(tensor.shape) for name, tensor in state_dict.items()}


def _meta_state_dict(manifest_part: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    return {name: torch.empty(shape, device="meta") for name, shape in manifest_part.items()}


def test_fresh_sd15_adapter_has_the_released_layout(fact_manifest, make_sd15_meta_unet):
    unet = make_sd15_meta_unet()
    adapter = FACTAdapter.for_unet(unet)
    expected = fact_manifest["fact_adapter_sd15"]
    assert len(expected) == 355
    assert _shapes(adapter.state_dict()) == expected
    assert sum(p.numel() for p in adapter.parameters()) == fact_manifest["fact_adapter_parameters"] == 255_535_584
    assert len(adapter.face_layers) == 16
    assert next(adapter.parameters()).is_meta
    adapter.remove()


def test_released_layout_loads_into_sd15_unet_on_meta(fact_manifest, make_sd15_meta_unet):
    unet = make_sd15_meta_unet()
    adapter = FACTAdapter.from_state_dict(_meta_state_dict(fact_manifest["fact_adapter_sd15"]), unet)
    assert adapter.is_installed
    assert adapter.local_fac_prj.config.heads == 12 and adapter.local_fac_prj.config.dim_head == 64
    processors = unet.attn_processors
    assert all(processors[name] is proc for name, proc in adapter.face_processors().items())


def test_released_layout_with_a_misshaped_tensor_is_refused(fact_manifest, make_sd15_meta_unet):
    state = _meta_state_dict(fact_manifest["fact_adapter_sd15"])
    name = "mid_block.attentions.0.transformer_blocks.0.attn2.processor.ln.weight"
    state[name] = torch.empty(320, device="meta")
    with pytest.raises(CheckpointMismatchError, match=r"ln\.weight") as info:
        FACTAdapter.from_state_dict(state, make_sd15_meta_unet())
    assert info.value.mismatched == [name]


def test_transface_s_has_the_released_layout(fact_manifest):
    expected = fact_manifest["transface_s"]
    with torch.device("meta"):
        model = TransFace(TransFaceConfig(), include_unused_heads=True)
    assert _shapes(model.state_dict()) == expected
    # the manifest counts every tensor element of the file (BatchNorm statistics and counters included)
    assert sum(t.numel() for t in model.state_dict().values()) == fact_manifest["transface_s_parameters"]
    assert fact_manifest["transface_s_parameters"] == 86_662_914


def test_transface_s_sizes_are_inferred_from_the_released_layout(fact_manifest):
    model = TransFace.from_state_dict(_meta_state_dict(fact_manifest["transface_s"]))
    assert model.config == TransFaceConfig()
    assert model.feature is None  # the unused global heads are accepted and dropped
    state = _meta_state_dict(fact_manifest["transface_s"])
    del state["blocks.11.mlp.fc2.bias"]
    with pytest.raises(CheckpointMismatchError, match=r"blocks\.11\.mlp\.fc2\.bias"):
        TransFace.from_state_dict(state)
