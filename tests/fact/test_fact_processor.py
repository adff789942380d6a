"""FACT face layers in a tiny SD1.5-topology UNet: equivalence with FACT.md §4 written out by hand, scale 0,
fresh gates, exact removal, face-token bookkeeping, masks, only_cross_attention, dtypes."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers.models import attention_processor
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
from torch import nn

from facestudio.fact import (
    FaceTokenPassThroughProcessor,
    FACTAdapter,
    GatedFaceAttnProcessor,
    face_conditioning,
    find_face_layers,
    split_face_tokens,
)

# ---------------------------------------------------------------------------------------------------------------
# Reference math, written from FACT.md §4 independently of the production code: explicit LayerNorm, explicit
# softmax over all (HW + M) tokens, then [:, :HW]; explicit GEGLU; the block's text cross-attention computed from
# the Attention layer's weights; the released residual convention (return h' + cross - h).


def _layer_norm(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def _gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _multi_head_attention(q, k, v, heads):
    batch, len_q, width = q.shape
    d = width // heads
    q = q.reshape(batch, len_q, heads, d).permute(0, 2, 1, 3)
    k = k.reshape(batch, k.shape[1], heads, d).permute(0, 2, 1, 3)
    v = v.reshape(batch, v.shape[1], heads, d).permute(0, 2, 1, 3)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(d)
    probs = torch.softmax(scores.float(), dim=-1).to(v.dtype)
    return (probs @ v).permute(0, 2, 1, 3).reshape(batch, len_q, width)


class ReferenceFACTProcessor:
    """Slow FACT layer from the spec, given a plain dict of the face layer's tensors."""

    def __init__(self, tensors: dict[str, torch.Tensor], num_face_tokens: int, scale: float):
        self.p = {k: v.detach().clone() for k, v in tensors.items()}
        self.num_face_tokens = num_face_tokens
        self.scale = scale

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None):
        p, m = self.p, self.num_face_tokens
        h = hidden_states
        text, face = encoder_hidden_states[:, :-m], encoder_hidden_states[:, -m:]
        num_visual = h.shape[1]
        face = face @ p["linear.weight"].T + p["linear.bias"]
        x = _layer_norm(torch.cat([h, face], dim=1), p["norm1.weight"], p["norm1.bias"])
        full = _multi_head_attention(
            x @ p["attn.to_q.weight"].T, x @ p["attn.to_k.weight"].T, x @ p["attn.to_v.weight"].T, attn.heads
        )
        full = full @ p["attn.to_out.0.weight"].T + p["attn.to_out.0.bias"]
        h1 = h + self.scale * torch.tanh(p["alpha_attn"]) * full[:, :num_visual]
        inner = (
            _layer_norm(h1, p["norm2.weight"], p["norm2.bias"]) @ p["ff.net.0.proj.weight"].T + p["ff.net.0.proj.bias"]
        )
        value, gate = inner.chunk(2, dim=-1)
        ff = (value * _gelu(gate)) @ p["ff.net.2.weight"].T + p["ff.net.2.bias"]
        h2 = h1 + self.scale * torch.tanh(p["alpha_dense"]) * ff
        normed = _layer_norm(h2, p["ln.weight"], p["ln.bias"])
        cross = _multi_head_attention(
            normed @ attn.to_q.weight.T, text @ attn.to_k.weight.T, text @ attn.to_v.weight.T, attn.heads
        )
        cross = cross @ attn.to_out[0].weight.T + attn.to_out[0].bias
        return h2 + cross - h


def _install_reference(unet, adapter, num_face_tokens, scale):
    """Give `unet` (the base weights) reference FACT layers with the adapter's tensors."""
    processors = dict(unet.attn_processors)
    for name, proc in adapter.face_processors().items():
        block = unet.get_submodule(name.removesuffix(".attn2.processor"))
        block.norm2 = nn.Identity()
        processors[name] = ReferenceFACTProcessor(proc.state_dict(), num_face_tokens, scale)
    unet.set_attn_processor(processors)


# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def gated_setup(make_unet, tiny_resampler_config, randomize):
    """A tiny UNet with an installed, randomised adapter (non-zero gates, `ln` != norm2)."""
    unet = make_unet()
    adapter = FACTAdapter.for_unet(unet, tiny_resampler_config, pass_through_other_layers=True)
    randomize(adapter)
    return unet, adapter


def test_finds_the_sixteen_cross_attention_layers(make_unet):
    layers = find_face_layers(make_unet())
    names = [layer.processor_name for layer in layers]
    assert len(names) == 16
    assert all(name.endswith(".attn2.processor") for name in names)
    widths = {layer.processor_name.split(".attentions")[0]: layer.hidden_size for layer in layers}
    assert widths == {
        "down_blocks.0": 16,
        "down_blocks.1": 16,
        "down_blocks.2": 32,
        "mid_block": 32,
        "up_blocks.1": 32,
        "up_blocks.2": 16,
        "up_blocks.3": 16,
    }
    assert {layer.heads for layer in layers} == {2}


@pytest.mark.parametrize("num_photos", [1, 3])
@torch.no_grad()
def test_unet_matches_reference_fact_math(gated_setup, make_unet, unet_inputs, face_tokens, num_photos):
    unet, adapter = gated_setup
    adapter.set_scale(0.8)
    latents, timesteps, text = unet_inputs
    features = face_tokens(num_photos)
    cond = face_conditioning(adapter, text, features)
    assert cond.num_face_tokens == 16 * num_photos
    assert adapter.num_face_tokens == 0  # the count travels with the call, not through the adapter
    embeds = cond.prompt_embeds
    torch.testing.assert_close(embeds, torch.cat([text, adapter.encode_faces(features).expand(2, -1, -1)], dim=1))

    reference_unet = make_unet()
    _install_reference(reference_unet, adapter, 16 * num_photos, 0.8)
    expected = reference_unet(latents, timesteps, encoder_hidden_states=embeds).sample
    got = unet(latents, timesteps, encoder_hidden_states=embeds, cross_attention_kwargs=cond.cross_attention_kwargs).sample
    base = make_unet()(latents, timesteps, encoder_hidden_states=text).sample

    assert (expected - base).abs().max() > 1e-2  # the face path really changes the output
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


@torch.no_grad()
def test_scale_zero_is_base_unet_with_checkpoint_ln(gated_setup, make_unet, unet_inputs, face_tokens):
    unet, adapter = gated_setup
    latents, timesteps, text = unet_inputs
    cond = face_conditioning(adapter, text, face_tokens(2))
    adapter.set_scale(0.0)
    got = unet(latents, timesteps, encoder_hidden_states=cond.prompt_embeds,
               cross_attention_kwargs=cond.cross_attention_kwargs).sample

    base = make_unet()
    for name, proc in adapter.face_processors().items():
        base.get_submodule(name.removesuffix(".attn2.processor")).norm2.load_state_dict(proc.ln.state_dict())
    expected = base(latents, timesteps, encoder_hidden_states=text).sample
    assert (got - expected).abs().max() <= 1e-6
    # and `ln` really is the checkpoint's: the untouched base UNet differs
    plain = make_unet()(latents, timesteps, encoder_hidden_states=text).sample
    assert (got - plain).abs().max() > 1e-3


@pytest.mark.parametrize("scale", [1.0, 5.0])
@torch.no_grad()
def test_fresh_gate_is_identity(make_unet, tiny_resampler_config, unet_inputs, face_tokens, scale):
    unet = make_unet()
    latents, timesteps, text = unet_inputs
    expected = unet(latents, timesteps, encoder_hidden_states=text).sample
    adapter = FACTAdapter.for_unet(unet, tiny_resampler_config)
    adapter.set_scale(scale)
    embeds = torch.cat([text, adapter.encode_faces(face_tokens(1)).expand(2, -1, -1)], dim=1)
    adapter.set_num_face_tokens(16)
    got = unet(latents, timesteps, encoder_hidden_states=embeds).sample
    assert (got - expected).abs().max() < 1e-5


@torch.no_grad()
def test_remove_restores_same_processor_objects_and_output(
    make_unet, tiny_resampler_config, randomize, unet_inputs, face_tokens
):
    unet = make_unet()
    latents, timesteps, text = unet_inputs
    # a non-default processor on some layers must survive (not be replaced by a new default instance)
    custom = {name: AttnProcessor() for name in list(unet.attn_processors)[::3]}
    unet.set_attn_processor({**unet.attn_processors, **custom})
    before_out = unet(latents, timesteps, encoder_hidden_states=text).sample
    before_procs = unet.attn_processors
    before_norm2 = {name: m.norm2 for name, m in unet.named_modules() if hasattr(m, "attn2")}
    before_keys = list(unet.state_dict())

    adapter = FACTAdapter.for_unet(unet, tiny_resampler_config)
    randomize(adapter)
    embeds = torch.cat([text, adapter.encode_faces(face_tokens(1)).expand(2, -1, -1)], dim=1)
    adapter.set_num_face_tokens(16)
    assert (unet(latents, timesteps, encoder_hidden_states=embeds).sample - before_out).abs().max() > 1e-3
    assert all(isinstance(unet.get_submodule(n).norm2, nn.Identity) for n in before_norm2)
    adapter.remove()

    after_procs = unet.attn_processors
    assert after_procs.keys() == before_procs.keys()
    assert all(after_procs[name] is before_procs[name] for name in before_procs)
    assert all(unet.get_submodule(name).norm2 is norm2 for name, norm2 in before_norm2.items())
    assert list(unet.state_dict()) == before_keys
    assert torch.equal(unet(latents, timesteps, encoder_hidden_states=text).sample, before_out)
    assert not adapter.is_installed
    with pytest.raises(RuntimeError):
        adapter.remove()


def test_install_keeps_attn1_processor_objects(make_unet, tiny_resampler_config):
    unet = make_unet()
    before = unet.attn_processors
    adapter = FACTAdapter.for_unet(unet, tiny_resampler_config)
    after = unet.attn_processors
    for name, proc in after.items():
        if name.endswith("attn1.processor"):
            assert proc is before[name]
        else:
            assert isinstance(proc, GatedFaceAttnProcessor)
            assert proc.base_processor is before[name]
            assert proc is adapter.get_submodule(name)
    with pytest.raises(ValueError, match="already installed"):
        FACTAdapter.for_unet(unet, tiny_resampler_config)


@torch.no_grad()
def test_different_faces_change_output(gated_setup, unet_inputs, face_tokens):
    unet, adapter = gated_setup
    adapter.set_scale(0.5)
    latents, timesteps, text = unet_inputs
    outputs = []
    for seed in (3, 4):
        cond = face_conditioning(adapter, text, face_tokens(1, seed=seed))
        outputs.append(unet(latents, timesteps, encoder_hidden_states=cond.prompt_embeds,
                            cross_attention_kwargs=cond.cross_attention_kwargs).sample)
    assert (outputs[0] - outputs[1]).abs().max() > 1e-3


@torch.no_grad()
def test_no_face_tokens_is_resampler_on_zeros(gated_setup):
    _, adapter = gated_setup
    tokens = adapter.no_face_tokens(3)
    assert tokens.shape == (1, 48, 24)
    single = adapter.local_fac_prj(torch.zeros(1, 144, 20))
    torch.testing.assert_close(tokens, single.repeat(1, 3, 1))


@torch.no_grad()
def test_wrong_face_token_count_is_an_error(gated_setup, unet_inputs, face_tokens):
    unet, adapter = gated_setup
    latents, timesteps, text = unet_inputs
    cond = face_conditioning(adapter, text, face_tokens(1))
    # says 3 photos, but only 16 face tokens + 7 text tokens are passed
    with pytest.raises(ValueError, match="48 face tokens"):
        unet(latents, timesteps, encoder_hidden_states=cond.prompt_embeds, cross_attention_kwargs={"num_face_tokens": 48})
    adapter.set_num_face_tokens(48)  # the shared fallback is checked the same way
    with pytest.raises(ValueError, match="48 face tokens"):
        unet(latents, timesteps, encoder_hidden_states=cond.prompt_embeds)


def test_split_face_tokens_and_text_tokens(gated_setup, face_tokens):
    _, adapter = gated_setup
    embeds = torch.randn(2, 7 + 32, 24)
    text, face = split_face_tokens(embeds, 32)
    assert torch.equal(text, embeds[:, :7]) and torch.equal(face, embeds[:, 7:])
    assert split_face_tokens(embeds, 0) == (embeds, None)
    face_conditioning(adapter, torch.randn(2, 7, 24), face_tokens(2)).bind_controlnets(adapter)
    assert adapter.num_face_tokens == 32
    assert torch.equal(adapter.text_tokens(embeds), embeds[:, :7])


@torch.no_grad()
def test_encoder_attention_mask_over_text_or_text_and_face(gated_setup, unet_inputs, face_tokens):
    unet, adapter = gated_setup
    latents, timesteps, text = unet_inputs
    embeds = torch.cat([text, adapter.encode_faces(face_tokens(1)).expand(2, -1, -1)], 1)
    adapter.set_num_face_tokens(16)
    text_mask = torch.ones(2, 7)
    text_mask[:, 5:] = 0
    full_mask = torch.cat([text_mask, torch.ones(2, 16)], 1)
    out_text = unet(latents, timesteps, encoder_hidden_states=embeds, encoder_attention_mask=text_mask).sample
    out_full = unet(latents, timesteps, encoder_hidden_states=embeds, encoder_attention_mask=full_mask).sample
    out_none = unet(latents, timesteps, encoder_hidden_states=embeds).sample
    torch.testing.assert_close(out_text, out_full, rtol=0, atol=1e-6)
    assert (out_text - out_none).abs().max() > 1e-4


@torch.no_grad()
def test_per_call_face_scale_kwarg_without_warnings(
    make_unet, tiny_resampler_config, randomize, unet_inputs, face_tokens, monkeypatch
):
    unet = make_unet()
    adapter = FACTAdapter.for_unet(unet, tiny_resampler_config, pass_through_other_layers=True)
    randomize(adapter)
    warnings = []
    monkeypatch.setattr(attention_processor.logger, "warning", lambda msg, *a, **k: warnings.append(msg))
    latents, timesteps, text = unet_inputs
    cond = face_conditioning(adapter, text, face_tokens(1))
    embeds, kwargs = cond.prompt_embeds, cond.cross_attention_kwargs
    adapter.set_scale(0.0)
    at_zero = unet(latents, timesteps, encoder_hidden_states=embeds, cross_attention_kwargs=kwargs).sample
    adapter.set_scale(1.0)
    at_one = unet(latents, timesteps, encoder_hidden_states=embeds, cross_attention_kwargs=kwargs).sample
    override = unet(latents, timesteps, encoder_hidden_states=embeds,
                    cross_attention_kwargs={**kwargs, "face_scale": 0.0}).sample
    assert torch.equal(override, at_zero)
    assert (at_one - at_zero).abs().max() > 1e-3
    assert warnings == []
    assert all(isinstance(p, FaceTokenPassThroughProcessor) for n, p in unet.attn_processors.items() if "attn1" in n)


@torch.no_grad()
def test_only_cross_attention_blocks_never_show_face_tokens_to_attn1(
    make_unet, tiny_resampler_config, randomize, unet_inputs, face_tokens
):
    unet = make_unet(only_cross_attention=True)
    before = unet.attn_processors
    adapter = FACTAdapter.for_unet(unet, tiny_resampler_config)
    randomize(adapter)
    for name, proc in unet.attn_processors.items():
        if name.endswith("attn1.processor"):
            block = unet.get_submodule(name.removesuffix(".attn1.processor"))
            if block.only_cross_attention:  # diffusers' mid block never is
                assert isinstance(proc, FaceTokenPassThroughProcessor) and proc.base_processor is before[name]
            else:
                assert proc is before[name]

    latents, timesteps, text = unet_inputs
    embeds = torch.cat([text, adapter.encode_faces(face_tokens(1)).expand(2, -1, -1)], 1)
    adapter.set_num_face_tokens(16)
    adapter.set_scale(0.0)
    got = unet(latents, timesteps, encoder_hidden_states=embeds).sample
    base = make_unet(only_cross_attention=True)
    for name, proc in adapter.face_processors().items():
        base.get_submodule(name.removesuffix(".attn2.processor")).norm2.load_state_dict(proc.ln.state_dict())
    assert (got - base(latents, timesteps, encoder_hidden_states=text).sample).abs().max() <= 1e-6
    adapter.remove()
    assert all(unet.attn_processors[n] is before[n] for n in before)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@torch.no_grad()
def test_half_precision_forward_is_finite(make_unet, tiny_resampler_config, randomize, unet_inputs, face_tokens, dtype):
    unet = make_unet().to(dtype)
    adapter = FACTAdapter.for_unet(unet, tiny_resampler_config)
    randomize(adapter)
    assert {p.dtype for p in adapter.parameters()} == {dtype}
    latents, timesteps, text = unet_inputs
    face = adapter.encode_faces(face_tokens(1))
    assert face.dtype == dtype
    embeds = torch.cat([text.to(dtype), face.expand(2, -1, -1)], 1)
    adapter.set_num_face_tokens(16)
    out = unet(latents.to(dtype), timesteps, encoder_hidden_states=embeds).sample
    assert out.dtype == dtype and torch.isfinite(out).all()


def test_set_scale_rejects_bad_values(gated_setup):
    _, adapter = gated_setup
    for bad in (-0.1, float("nan"), float("inf"), "strong"):
        with pytest.raises(ValueError, match="face_scale"):
            adapter.set_scale(bad)
    adapter.set_scale(0.55)
    assert adapter.scale == 0.55


def test_install_refuses_processor_with_weights_and_leaves_unet_untouched(make_unet, tiny_resampler_config):
    class WeightedProcessor(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))
            self.inner = AttnProcessor2_0()

        def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None):
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask)

    unet = make_unet()
    name = find_face_layers(unet)[0].processor_name
    unet.set_attn_processor({**unet.attn_processors, name: WeightedProcessor()})
    before = unet.attn_processors
    with pytest.raises(ValueError, match="owns weights"):
        FACTAdapter.for_unet(unet, tiny_resampler_config)
    assert all(unet.attn_processors[n] is p for n, p in before.items())
    assert not any(isinstance(m, nn.Identity) for m in unet.modules())


def test_trainable_parameter_groups(gated_setup):
    _, adapter = gated_setup
    all_params = {id(p) for p in adapter.parameters()}
    face_params = {id(p) for p in adapter.face_layer_parameters()}
    resampler_params = {id(p) for p in adapter.local_fac_prj.parameters()}
    assert face_params | resampler_params == all_params
    assert not face_params & resampler_params
    assert len(face_params) == 16 * 19  # tensors per face layer in the released layout
