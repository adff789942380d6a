"""FACT face adapter (FaceChain-FACT, arXiv 2410.12312) for Stable Diffusion 1.5 UNets.

Layering: this package uses torch, safetensors and `diffusers.models` only; it knows nothing of pipelines,
devices policy or the UI (`face` -> `fact` -> `engine`).
"""

from facestudio.fact.adapter import FACTAdapter
from facestudio.fact.attention import (
    FaceConditioning,
    FaceTokenPassThroughProcessor,
    GatedFaceAttnProcessor,
    IncrementObserver,
    split_face_tokens,
)
from facestudio.fact.checkpoints import (
    check_state_dict,
    load_state_dict,
    read_safetensors_metadata,
    save_state_dict,
)
from facestudio.fact.conditioning import FaceConditionedEmbeds, face_conditioning
from facestudio.fact.install import (
    FaceLayer,
    PreviousAttention,
    find_face_layers,
    install_face_adapter,
    install_text_only_attention,
    remove_face_adapter,
)
from facestudio.fact.resampler import FaceResampler, ResamplerConfig
from facestudio.fact.transface import TransFace, TransFaceConfig

__all__ = [
    "FACTAdapter",
    "FaceConditionedEmbeds",
    "FaceConditioning",
    "FaceLayer",
    "FaceResampler",
    "FaceTokenPassThroughProcessor",
    "GatedFaceAttnProcessor",
    "IncrementObserver",
    "PreviousAttention",
    "ResamplerConfig",
    "TransFace",
    "TransFaceConfig",
    "check_state_dict",
    "face_conditioning",
    "find_face_layers",
    "install_face_adapter",
    "install_text_only_attention",
    "load_state_dict",
    "read_safetensors_metadata",
    "remove_face_adapter",
    "save_state_dict",
    "split_face_tokens",
]
