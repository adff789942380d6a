"""`FACTAdapter`: the resampler plus the face layers of one UNet, loaded, installed and saved as one module.

The module tree mirrors the released checkpoint: `local_fac_prj.*` is the resampler and each face layer sits at
its UNet processor path (`down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.*`), built from nested
`ModuleDict`s. So `state_dict()`, `load_state_dict()`, `parameters()` and `.to()` are plain `nn.Module` calls and
speak the released layout; the face processors are the same objects the UNet runs (they are registered in both).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from facestudio.errors import CheckpointMismatchError
from facestudio.fact.attention import FaceConditioning, GatedFaceAttnProcessor, check_face_scale, split_face_tokens
from facestudio.fact.checkpoints import check_state_dict, load_state_dict, read_safetensors_metadata, save_state_dict
from facestudio.fact.install import (
    FaceLayer,
    PreviousAttention,
    find_face_layers,
    install_face_adapter,
    remove_face_adapter,
    transformer_block,
)
from facestudio.fact.resampler import FaceResampler, ResamplerConfig

if TYPE_CHECKING:
    from diffusers.models import UNet2DConditionModel

logger = logging.getLogger(__name__)

RESAMPLER_PREFIX = "local_fac_prj."
FORMAT_VERSION = "1"
# Patch tokens per photo from TransFace-S (12 x 12); the "no face" embedding is the resampler on that many zeros.
TRANSFACE_NUM_PATCHES = 144


def _register_at_path(root: nn.Module, path: str, module: nn.Module) -> None:
    """Register `module` under a dotted `path` below `root`, creating `ModuleDict`s for the levels between."""
    *parents, leaf = path.split(".")
    node = root
    for part in parents:
        child = node._modules.get(part)
        if child is None:
            child = nn.ModuleDict()
            node.add_module(part, child)
        node = child
    node.add_module(leaf, module)


class FACTAdapter(nn.Module):
    r"""FACT face adapter for one SD1.5-topology UNet.

    Components: `local_fac_prj` (`FaceResampler`: face-encoder tokens -> 16 face tokens per photo) and one
    `GatedFaceAttnProcessor` per UNet cross-attention layer, registered at the layer's processor path. All face
    layers share one `FaceConditioning` (strength and face-token count).

    Build it with `from_checkpoint` (released weights), `from_state_dict`, or `for_unet` (fresh, for training);
    all three install it into the UNet in place. `remove()` restores the UNet exactly.

    Example:
        ```py
        >>> adapter = FACTAdapter.from_checkpoint("adapter_maj_mask_large_new_reg001_faceshuffle_00290001.ckpt", unet)
        >>> adapter.set_scale(0.5)
        >>> cond = face_conditioning(adapter, text, transface(aligned_photos), negative_prompt_embeds=negative_text)
        >>> embeds = torch.cat([cond.negative_prompt_embeds, cond.prompt_embeds])  # "no face" in the negative branch
        >>> noise_pred = unet(latents, t, encoder_hidden_states=embeds,
        ...                   cross_attention_kwargs=cond.cross_attention_kwargs).sample
        >>> adapter.remove()
        ```
    """

    # Kept in `__dict__` (see `__init__`), not registered as submodules.
    _unet: UNet2DConditionModel | None
    _previous: PreviousAttention | None

    def __init__(
        self,
        face_layers: Sequence[FaceLayer],
        resampler_config: ResamplerConfig,
        conditioning: FaceConditioning | None = None,
    ):
        super().__init__()
        self.conditioning = conditioning if conditioning is not None else FaceConditioning()
        self.local_fac_prj = FaceResampler(resampler_config)
        self.face_layers = tuple(face_layers)
        for layer in self.face_layers:
            if layer.cross_attention_dim != resampler_config.output_dim:
                raise ValueError(
                    f"The resampler outputs {resampler_config.output_dim}-wide face tokens but layer "
                    f"{layer.processor_name} takes {layer.cross_attention_dim}-wide encoder tokens; the adapter "
                    "and the UNet are for different base models."
                )
            processor = GatedFaceAttnProcessor(
                layer.hidden_size, layer.cross_attention_dim, layer.heads, self.conditioning, ln_eps=layer.norm_eps
            )
            _register_at_path(self, layer.processor_name, processor)
        # Plain attributes, not submodules: the adapter must not own (or save) the UNet.
        self.__dict__["_unet"] = None
        self.__dict__["_previous"] = None

    # ----------------------------------------------------------------------------------------------- building

    @classmethod
    def for_unet(
        cls,
        unet: UNet2DConditionModel,
        resampler_config: ResamplerConfig | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        pass_through_other_layers: bool = False,
    ) -> FACTAdapter:
        """A fresh adapter (gates at 0, so the UNet's output is unchanged) installed into `unet`.

        Args:
            unet (`UNet2DConditionModel`): SD1.5-topology UNet; modified in place.
            resampler_config (`ResamplerConfig`, *optional*): defaults to the released sizes with `output_dim` =
                `unet.config.cross_attention_dim`.
            device, dtype (*optional*): default to the UNet's. A UNet on the meta device gives a meta adapter.
            pass_through_other_layers (`bool`, *optional*): see `install_face_adapter`.
        """
        layers = find_face_layers(unet)
        config = resampler_config or ResamplerConfig(output_dim=unet.config["cross_attention_dim"])
        device = torch.device(device) if device is not None else unet.device
        with torch.device(device):
            adapter = cls(layers, config)
        # `ln` starts as a copy of the block's own norm2, so a fresh adapter is an exact no-op.
        with torch.no_grad():
            for layer, processor in zip(layers, adapter.face_processors().values(), strict=True):
                processor.ln.load_state_dict(transformer_block(unet, layer.block_name).norm2.state_dict())
        adapter.to(dtype=dtype or unet.dtype)
        adapter.install(unet, pass_through_other_layers=pass_through_other_layers)
        return adapter

    @classmethod
    def from_state_dict(
        cls,
        state_dict: Mapping[str, torch.Tensor],
        unet: UNet2DConditionModel,
        *,
        heads: int = 12,
        dim_head: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        pass_through_other_layers: bool = False,
    ) -> FACTAdapter:
        """Build an adapter from a state dict in the released layout, check it strictly, install it into `unet`.

        Args:
            state_dict (`Mapping[str, torch.Tensor]`): `local_fac_prj.*` and `<attn2 processor path>.*` tensors.
            unet (`UNet2DConditionModel`): the base model; modified in place.
            heads, dim_head (*optional*): resampler attention split (not recorded in the file; release: 12 x 64).
            device, dtype (*optional*): default to the UNet's.
            pass_through_other_layers (`bool`, *optional*): see `install_face_adapter`.

        Raises:
            `CheckpointMismatchError`: names the missing, unexpected and misshaped tensors.
        """
        resampler_part = {
            k[len(RESAMPLER_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(RESAMPLER_PREFIX)
        }
        try:
            config = FaceResampler.config_from_state_dict(resampler_part, heads=heads, dim_head=dim_head)
        except CheckpointMismatchError as err:
            missing = [RESAMPLER_PREFIX + name for name in err.missing]
            raise CheckpointMismatchError(
                f"The FACT adapter checkpoint lacks {missing[0]!r}; is it a FACT adapter file?", missing=missing
            ) from None
        layers = find_face_layers(unet)
        with torch.device("meta"):
            adapter = cls(layers, config)
        expected = {name: tensor.shape for name, tensor in adapter.state_dict().items()}
        check_state_dict(state_dict, expected, what="FACT adapter")
        device = torch.device(device) if device is not None else unet.device
        if any(tensor.is_meta for tensor in state_dict.values()):
            device = torch.device("meta")
        # Allocate without a random init, then copy (not alias) the given tensors.
        adapter.to_empty(device=device)
        adapter.to(dtype=dtype or unet.dtype)
        adapter.load_state_dict(state_dict, strict=True)
        adapter.install(unet, pass_through_other_layers=pass_through_other_layers)
        return adapter

    @classmethod
    def from_checkpoint(cls, path: str | Path, unet: UNet2DConditionModel, **kwargs: Any) -> FACTAdapter:
        """Load a released `.ckpt` (weights-only unpickling) or a `.safetensors` file and install it into `unet`.

        Keyword arguments are those of `from_state_dict`. A FaceStudio `.safetensors` file records the resampler's
        head count, which is used unless `heads`/`dim_head` are given (a released `.ckpt` uses the default, 12).

        Raises:
            `CheckpointError`, `UnsafeCheckpointError`, `CheckpointMismatchError`.
        """
        path = Path(path)
        if "heads" not in kwargs and "dim_head" not in kwargs and path.suffix.lower() == ".safetensors":
            heads = read_safetensors_metadata(path).get("resampler_heads")
            if heads is not None and heads.isdigit():
                kwargs["heads"] = int(heads)
        return cls.from_state_dict(load_state_dict(path), unet, **kwargs)

    # ------------------------------------------------------------------------------------------ installation

    def face_processors(self) -> dict[str, GatedFaceAttnProcessor]:
        """The face layers by UNet processor path (the released key prefix)."""
        return {layer.processor_name: self._face_processor(layer.processor_name) for layer in self.face_layers}

    def _face_processor(self, name: str) -> GatedFaceAttnProcessor:
        processor = self.get_submodule(name)
        if not isinstance(processor, GatedFaceAttnProcessor):
            raise TypeError(f"{name!r} is a {type(processor).__name__}, not a GatedFaceAttnProcessor.")
        return processor

    def install(self, unet: UNet2DConditionModel, *, pass_through_other_layers: bool = False) -> None:
        """Install the face layers into `unet` (done by the constructors; use after `remove()` to re-install)."""
        if self._previous is not None:
            raise RuntimeError("This FACT adapter is already installed; call `remove()` first.")
        previous = install_face_adapter(
            unet, self.face_processors(), pass_through_other_layers=pass_through_other_layers
        )
        self.__dict__["_unet"] = unet
        self.__dict__["_previous"] = previous
        logger.debug("Installed FACT face layers on %d cross-attention layers", len(self.face_layers))

    @property
    def is_installed(self) -> bool:
        return self._previous is not None

    @property
    def previous_attention(self) -> PreviousAttention | None:
        """What installation replaced in the UNet (processors and `norm2` modules), or `None`."""
        return self._previous

    def remove(self) -> None:
        """Restore the UNet exactly: the same processor objects and `norm2` modules it had before."""
        if self._previous is None or self._unet is None:  # always set together by `install`
            raise RuntimeError("This FACT adapter is not installed.")
        remove_face_adapter(self._unet, self._previous)
        self.__dict__["_unet"] = None
        self.__dict__["_previous"] = None

    # ------------------------------------------------------------------------------------------ conditioning

    @property
    def tokens_per_photo(self) -> int:
        return self.local_fac_prj.config.num_queries

    @property
    def scale(self) -> float:
        return self.conditioning.scale

    def set_scale(self, scale: float) -> None:
        """Set FACT's strength `s` for the next UNet calls (release: 0.5 text-to-image, 0.55 inpainting).

        The strength is shared by all face layers and read on every call. That is safe because GPU work is
        serialised (one generation at a time per model); a "delayed face condition" sets 0 for the first steps.
        """
        self.conditioning.scale = check_face_scale(scale)

    @property
    def num_face_tokens(self) -> int:
        """How many trailing `encoder_hidden_states` tokens the face layers treat as face tokens when a call does not
        say (`cross_attention_kwargs["num_face_tokens"]`); ControlNets, which diffusers calls without those
        kwargs, always use it."""
        return self.conditioning.num_face_tokens

    def set_num_face_tokens(self, num_face_tokens: int) -> None:
        """Declare how many face tokens follow the text tokens for calls that do not pass the count
        (`FaceConditionedEmbeds.bind_controlnets` does it for the ControlNets)."""
        if num_face_tokens < 0:
            raise ValueError(f"`num_face_tokens` must be >= 0; got {num_face_tokens}.")
        self.conditioning.num_face_tokens = int(num_face_tokens)

    def encode_faces(self, face_tokens: torch.Tensor) -> torch.Tensor:
        """Face-encoder tokens of N photos of one person -> FACT face tokens, concatenated.

        A building block: to condition a UNet use `facestudio.fact.face_conditioning`, which appends these to the
        text embeddings and returns the face-token count to pass with each call.

        Args:
            face_tokens (`torch.Tensor`): `[N, 144, D]` from `TransFace`.

        Returns:
            `torch.Tensor`: `[1, 16 N, C]` in the adapter's dtype and device.
        """
        if face_tokens.ndim != 3:
            raise ValueError(f"`face_tokens` must be [N, L, D] (N photos); got shape {tuple(face_tokens.shape)}.")
        latents = self.local_fac_prj(face_tokens.to(self.local_fac_prj.latents.device))
        return latents.reshape(1, -1, latents.shape[-1])

    def no_face_tokens(self, num_photos: int = 1, num_patches: int = TRANSFACE_NUM_PATCHES) -> torch.Tensor:
        """The "no face" embedding for N photos, `[1, 16 N, C]`: the resampler on all-zero encoder tokens (FACT.md §3)."""
        if num_photos < 1:
            raise ValueError(f"`num_photos` must be >= 1; got {num_photos}.")
        latents = self.local_fac_prj.latents
        zeros = torch.zeros(
            1, num_patches, self.local_fac_prj.config.embedding_dim, device=latents.device, dtype=latents.dtype
        )
        return self.local_fac_prj(zeros).repeat(1, num_photos, 1)

    def text_tokens(self, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        """Drop the face tokens from `cat([text, face])`: what a ControlNet on the same pipeline must get."""
        return split_face_tokens(encoder_hidden_states, self.num_face_tokens)[0]

    # ------------------------------------------------------------------------------------------ training / IO

    def face_layer_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the face layers only (`parameters()` also includes the resampler)."""
        for processor in self.face_processors().values():
            yield from processor.parameters()

    def file_metadata(self, base_model: str = "sd15") -> dict[str, str]:
        """The safetensors metadata of a FaceStudio adapter file (what `from_checkpoint` reads back)."""
        return {
            "format": "pt",
            "facestudio_kind": "fact_adapter",
            "facestudio_format_version": FORMAT_VERSION,
            "base_model": base_model,
            "num_face_layers": str(len(self.face_layers)),
            "tokens_per_photo": str(self.tokens_per_photo),
            # Not recoverable from tensor shapes (only heads * dim_head is): needed to load the file back.
            "resampler_heads": str(self.local_fac_prj.config.heads),
        }

    def save(self, path: str | Path, base_model: str = "sd15") -> Path:
        """Save in the released key layout: `.safetensors` with metadata, or a `.ckpt` torch pickle of a flat dict
        (readable by the authors' loader). The write is atomic."""
        return save_state_dict(self.state_dict(), path, metadata=self.file_metadata(base_model))
