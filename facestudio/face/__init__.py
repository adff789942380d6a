"""Face analysis: loading photos, detecting faces with five landmarks, aligning, parsing and comparing identities.

This layer uses numpy, PIL, OpenCV and the detector backends only; it knows nothing of torch or diffusion.
"""

from facestudio.face.align import ARCFACE_TEMPLATE, align_face, similarity_matrix, to_unit_range
from facestudio.face.analyzer import FaceAnalyzer
from facestudio.face.detectors import BACKENDS, create_detector, resolve_backend
from facestudio.face.identity import SAME_PERSON_THRESHOLDS, Similarity, cosine_similarity, create_embedder
from facestudio.face.image import analysis_view, load_image
from facestudio.face.parsing import FACE_REGIONS, HEAD_REGIONS, REGIONS, FaceParser, FaceParsing
from facestudio.face.types import KEYPOINT_NAMES, Face, ImageAnalysis

__all__ = [
    "ARCFACE_TEMPLATE",
    "BACKENDS",
    "FACE_REGIONS",
    "HEAD_REGIONS",
    "KEYPOINT_NAMES",
    "REGIONS",
    "SAME_PERSON_THRESHOLDS",
    "Face",
    "FaceAnalyzer",
    "FaceParser",
    "FaceParsing",
    "ImageAnalysis",
    "Similarity",
    "align_face",
    "analysis_view",
    "cosine_similarity",
    "create_detector",
    "create_embedder",
    "load_image",
    "resolve_backend",
    "similarity_matrix",
    "to_unit_range",
]
