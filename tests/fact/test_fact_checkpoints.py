"""Adapter files: strict loading, refusing unsafe pickles, atomic save and round trips in both formats."""

from __future__ import annotations

import pickle

import pytest
import torch

from facestudio.errors import CheckpointError, CheckpointMismatchError, UnsafeCheckpointError
from facestudio.fact import FACTAdapter, load_state_dict, read_safetensors_metadata, save_state_dict

LAYER = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor"


@pytest.fixture
def saved_adapter(make_unet, tiny_resampler_config, randomize):
    """A randomised adapter, its state dict, and the UNet it is installed in."""
    unet = make_unet()
    adapter = FACTAdapter.for_unet(unet, tiny_resampler_config)
    randomize(adapter)
    return adapter, {k: v.clone() for k, v in adapter.state_dict().items()}, unet


def _resampler_heads(adapter) -> int:
    return adapter.local_fac_prj.config.heads


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
@torch.no_grad()
def test_adapter_state_dict_roundtrip(saved_adapter, make_unet, unet_inputs, face_tokens, tmp_path, suffix):
    adapter, state, first_unet = saved_adapter
    path = adapter.save(tmp_path / f"fact{suffix}")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
    if suffix == ".ckpt":
        # the authors' loader unpickles a flat dict of tensors: our .ckpt must be exactly that
        raw = torch.load(path, map_location="cpu", weights_only=True)
        assert type(raw) is dict and raw.keys() == state.keys()
    else:
        meta = read_safetensors_metadata(path)
        assert meta["facestudio_kind"] == "fact_adapter"
        assert meta["base_model"] == "sd15"
        assert meta["num_face_layers"] == "16"
        assert meta["facestudio_format_version"] == "1"

    unet = make_unet()
    loaded = FACTAdapter.from_checkpoint(path, unet, heads=_resampler_heads(adapter))
    assert loaded.state_dict().keys() == state.keys()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())

    latents, timesteps, text = unet_inputs
    outputs = []
    for a, u in ((adapter, first_unet), (loaded, unet)):
        a.set_scale(0.7)
        embeds = torch.cat([text, a.encode_faces(face_tokens(2)).expand(2, -1, -1)], 1)
        a.set_num_face_tokens(32)
        outputs.append(u(latents, timesteps, encoder_hidden_states=embeds).sample)
    assert torch.equal(outputs[0], outputs[1])


def test_missing_tensor_is_named_and_unet_untouched(saved_adapter, make_unet, tmp_path):
    adapter, state, _ = saved_adapter
    name = f"{LAYER}.attn.to_v.weight"
    del state[name]
    path = tmp_path / "broken.ckpt"
    torch.save(state, path)
    unet = make_unet()
    before = unet.attn_processors
    with pytest.raises(CheckpointMismatchError, match=name.replace(".", r"\.")) as info:
        FACTAdapter.from_checkpoint(path, unet, heads=_resampler_heads(adapter))
    assert info.value.missing == [name]
    assert info.value.unexpected == [] and info.value.mismatched == []
    assert all(unet.attn_processors[k] is v for k, v in before.items())


def test_misshaped_and_unexpected_tensors_are_named(saved_adapter, make_unet):
    adapter, state, _ = saved_adapter
    state[f"{LAYER}.linear.weight"] = torch.zeros(3, 3)
    state["local_fac_prj.bonus"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError) as info:
        FACTAdapter.from_state_dict(state, make_unet(), heads=_resampler_heads(adapter))
    assert info.value.mismatched == [f"{LAYER}.linear.weight"]
    assert info.value.unexpected == ["local_fac_prj.bonus"]
    assert f"{LAYER}.linear.weight (file [3, 3], expected [16, 24])" in str(info.value)


def test_many_missing_tensors_are_counted(saved_adapter, make_unet):
    adapter, state, _ = saved_adapter
    state = {k: v for k, v in state.items() if not k.startswith("up_blocks.")}
    with pytest.raises(CheckpointMismatchError, match=r"171 missing: .*\(and 166 more\)") as info:
        FACTAdapter.from_state_dict(state, make_unet(), heads=_resampler_heads(adapter))
    assert len(info.value.missing) == 9 * 19


def test_checkpoint_without_resampler_is_an_error(saved_adapter, make_unet):
    _, state, _ = saved_adapter
    state = {k: v for k, v in state.items() if not k.startswith("local_fac_prj.")}
    with pytest.raises(CheckpointMismatchError, match=r"local_fac_prj\.latents"):
        FACTAdapter.from_state_dict(state, make_unet())


class _Payload:
    """Unpickling this object calls `open(marker, "w")`, i.e. runs code that creates a file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, writer):
    # the payload is real: plain unpickling creates the control marker
    control = tmp_path / "control_marker"
    pickle.loads(pickle.dumps(_Payload(control))).close()
    assert control.exists()

    marker = tmp_path / "pwned"
    path = tmp_path / "adapter.ckpt"
    state = {"local_fac_prj.latents": torch.zeros(1, 16, 8), "evil": _Payload(marker)}
    if writer == "pickle":
        with open(path, "wb") as handle:
            pickle.dump(state, handle)
    else:
        torch.save(state, path)
    with pytest.raises(UnsafeCheckpointError, match=r"adapter\.ckpt"):
        load_state_dict(path)
    assert not marker.exists()


def test_unreadable_files_are_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_state_dict(tmp_path / "nope.safetensors")
    bad_suffix = tmp_path / "weights.onnx"
    bad_suffix.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="extension"):
        load_state_dict(bad_suffix)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_state_dict(garbage)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(CheckpointError):
        load_state_dict(truncated)
    nested = tmp_path / "nested.pt"
    torch.save({"state_dict": {"a": torch.zeros(1)}}, nested)
    with pytest.raises(CheckpointError, match="flat dict"):
        load_state_dict(nested)
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(CheckpointError, match="list"):
        load_state_dict(listed)


def test_failed_save_keeps_the_previous_file(tmp_path):
    path = tmp_path / "fact.safetensors"
    save_state_dict({"a": torch.ones(2)}, path)
    with pytest.raises(ValueError, match="meta"):
        save_state_dict({"a": torch.empty(2, device="meta")}, path)
    assert torch.equal(load_state_dict(path)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["fact.safetensors"]
