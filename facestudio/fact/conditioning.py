"""The one way a UNet is conditioned on a face: text embeddings + FACT face tokens -> what the UNet receives.

Generation (`facestudio.engine`), the training samples and the trainer all call `face_conditioning`; nothing else
concatenates face tokens to text embeddings. FACT appends the face tokens after the text tokens (FACT.md §4), so
the face layers must know how many trailing tokens are face tokens. That count travels with each call
(`cross_attention_kwargs={"num_face_tokens": M}`), never through state left behind by an earlier call, so two
conditionings (a request with 3 photos, a sample with 1) cannot see each other's count.

ControlNets are the exception: diffusers' ControlNet pipelines call them without `cross_attention_kwargs`, so the
text-only processors installed in a ControlNet (`install_text_only_attention`) read the count from the adapter's
`FaceConditioning`; `FaceConditionedEmbeds.bind_controlnets` sets it from the same result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from facestudio.fact.adapter import FACTAdapter


@dataclass(frozen=True)
class FaceConditionedEmbeds:
    """What a UNet (or a diffusers pipeline over it) receives for one face conditioning.

    Attributes:
        prompt_embeds (`torch.Tensor`): `cat([text, face], dim=1)`, `[B, T + M, C]`.
        negative_prompt_embeds (`torch.Tensor`, *optional*): the negative CFG branch, `cat([negative text,
            "no face" or face])`, `[B, T + M, C]`; `None` without a negative branch.
        num_face_tokens (`int`): M, the trailing face tokens (16 per photo).
    """

    prompt_embeds: torch.Tensor
    negative_prompt_embeds: torch.Tensor | None
    num_face_tokens: int

    @property
    def cross_attention_kwargs(self) -> dict[str, int]:
        """The per-call face-token count for `unet(...)` or a pipeline's `cross_attention_kwargs`."""
        return {"num_face_tokens": self.num_face_tokens}

    def bind_controlnets(self, adapter: FACTAdapter) -> None:
        """Tell the ControlNets bound to `adapter` (which diffusers calls without `cross_attention_kwargs`) how many
        face tokens to strip. Call it before each pipeline call that runs a ControlNet; serialised GPU work makes the
        shared count safe, as for the strength."""
        adapter.set_num_face_tokens(self.num_face_tokens)


def face_conditioning(
    adapter: FACTAdapter,
    prompt_embeds: torch.Tensor,
    face_features: torch.Tensor,
    *,
    negative_prompt_embeds: torch.Tensor | None = None,
    face_cfg: bool = True,
    drop: torch.Tensor | None = None,
) -> FaceConditionedEmbeds:
    """Append FACT face tokens to text embeddings, for both CFG branches.

    Args:
        adapter (`FACTAdapter`): its resampler turns face-encoder tokens into face tokens.
        prompt_embeds (`torch.Tensor`): text embeddings `[B, T, C]`.
        face_features (`torch.Tensor`): face-encoder (TransFace) tokens: `[N, L, D]` for N photos of one person,
            shared by the whole batch, or `[B, N, L, D]` for one person per batch item. A person's N photos become
            16 N face tokens, in photo order.
        negative_prompt_embeds (`torch.Tensor`, *optional*): negative text embeddings `[B, T, C]`; without them
            there is no negative branch (training, or CFG off).
        face_cfg (`bool`, *optional*, defaults to `True`): the negative branch gets the "no face" tokens (the
            release's face CFG) rather than the face tokens.
        drop (`torch.Tensor`, *optional*): `bool[B]`; items conditioned on the "no face" tokens instead of their
            face (training's condition drop).

    Returns:
        `FaceConditionedEmbeds`, in `prompt_embeds`' dtype.
    """
    if face_features.ndim == 3:
        face_features = face_features.unsqueeze(0)
    if face_features.ndim != 4:
        raise ValueError(
            f"`face_features` must be [N, L, D] or [B, N, L, D]; got shape {tuple(face_features.shape)}."
        )
    people, photos = face_features.shape[:2]
    batch = prompt_embeds.shape[0]
    if people not in (1, batch):
        raise ValueError(f"`face_features` has {people} people for a batch of {batch} prompts; give 1 or {batch}.")
    if drop is not None and drop.shape != (people,):
        raise ValueError(f"`drop` must have one flag per person ({people}); got shape {tuple(drop.shape)}.")

    resampler = adapter.local_fac_prj
    tokens = resampler(face_features.flatten(0, 1).to(resampler.latents.device))  # [people * N, 16, C]
    tokens = tokens.reshape(people, photos * tokens.shape[1], tokens.shape[2])
    need_no_face = (drop is not None and bool(drop.any())) or (negative_prompt_embeds is not None and face_cfg)
    no_face = adapter.no_face_tokens(photos) if need_no_face else None
    if drop is not None and no_face is not None and bool(drop.any()):
        tokens = torch.where(drop.to(tokens.device)[:, None, None], no_face.expand_as(tokens), tokens)

    def append(text: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
        return torch.cat([text, face.to(text.device, text.dtype).expand(text.shape[0], -1, -1)], dim=1)

    negative = None
    if negative_prompt_embeds is not None:
        negative = append(negative_prompt_embeds, no_face if face_cfg and no_face is not None else tokens)
    return FaceConditionedEmbeds(append(prompt_embeds, tokens), negative, int(tokens.shape[1]))
