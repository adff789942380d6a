"""`FaceAnalyzer`: the one object the rest of the studio uses for faces: detect, pick, parse, embed, prepare.

Models are created on first use and kept; each is guarded by its own lock, so one analyzer can serve several
threads (the UI's workers) without loading anything twice.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from PIL import Image

from facestudio.config import DEFAULT_INSIGHTFACE_ROOT
from facestudio.errors import FaceNotFoundError
from facestudio.face.align import align_face
from facestudio.face.attributes import AttributeEstimator, create_attribute_estimator
from facestudio.face.detectors import FaceDetector, create_detector, resolve_backend
from facestudio.face.identity import IdentityEmbedder, Similarity, compare, create_embedder
from facestudio.face.image import DEFAULT_ANALYSIS_MAX_SIDE, analysis_view
from facestudio.face.parsing import FaceParser, FaceParsing
from facestudio.face.types import Face, ImageAnalysis


class FaceAnalyzer:
    """Face detection, parsing and identity for whole photos.

    Args:
        backend: `str`, *optional*, defaults to "auto". "insightface" (needs its model pack on disk), "mediapipe"
            (offline, bundled) or "auto" (insightface when present, else mediapipe).
        identity: `str`, *optional*, defaults to "auto". "arcface", "dlib" or "auto" (arcface when present).
        min_face_px: `int`, *optional*, defaults to 30. Smallest face the offline detector looks for.
        analysis_max_side: `int`, *optional*, defaults to 2048. Larger photos are analysed on a downscaled copy.
        insightface_root: `Path`, *optional*, defaults to `~/.insightface`. Where insightface model packs are
            looked for (the fronts pass `StudioSettings.insightface_root`).

    Example:
        >>> analyzer = FaceAnalyzer()
        >>> image = load_image("obama.jpg")
        >>> face = analyzer.select_face(analyzer.analyze(image), name="obama.jpg")
        >>> crop = analyzer.reference_crop(image, face)  # 112x112x3, FACT's encoder input
    """

    def __init__(self, backend: str = "auto", embedder: str = "auto", min_face_px: int = 30,
                 analysis_max_side: int = DEFAULT_ANALYSIS_MAX_SIDE, insightface_root: Path = DEFAULT_INSIGHTFACE_ROOT):
        self.insightface_root = Path(insightface_root)
        self.backend = resolve_backend(backend, self.insightface_root)
        self.embedder_backend = embedder
        self.min_face_px = int(min_face_px)
        self.analysis_max_side = int(analysis_max_side)
        self._detector: FaceDetector | None = None
        self._parser: FaceParser | None = None
        self._embedder: IdentityEmbedder | None = None
        self._attributes: AttributeEstimator | None = None
        self._attributes_probed = False
        self._init_lock = threading.Lock()

    # -- lazily built models ----------------------------------------------------------------------------------

    @property
    def detector(self) -> FaceDetector:
        if self._detector is None:
            with self._init_lock:
                if self._detector is None:
                    options = {"min_face_px": self.min_face_px} if self.backend == "mediapipe" else {}
                    self._detector = create_detector(self.backend, self.insightface_root, **options)
        return self._detector

    @property
    def parser(self) -> FaceParser:
        if self._parser is None:
            with self._init_lock:
                if self._parser is None:
                    self._parser = FaceParser()
        return self._parser

    @property
    def embedder(self) -> IdentityEmbedder:
        if self._embedder is None:
            with self._init_lock:
                if self._embedder is None:
                    self._embedder = create_embedder(self.embedder_backend, self.insightface_root)
        return self._embedder

    @property
    def attributes(self) -> AttributeEstimator | None:
        """Apparent gender/age (insightface's model when its pack is on disk), or `None`: the subject words are
        then the user's to type."""
        if not self._attributes_probed:
            with self._init_lock:
                if not self._attributes_probed:
                    self._attributes = create_attribute_estimator(self.insightface_root)
                    self._attributes_probed = True
        return self._attributes

    def close(self) -> None:
        for model in (self._detector, self._parser):
            if model is not None:
                model.close()
        self._detector = self._parser = self._embedder = None

    # -- analysis -----------------------------------------------------------------------------------------------

    def analyze(self, image: Image.Image) -> ImageAnalysis:
        """Every face in an upright RGB photo, largest first, in the photo's own pixel coordinates."""
        view = analysis_view(image, self.analysis_max_side)
        faces = self.detector.detect(view.pixels)
        if view.scale != 1.0:
            faces = [face.scaled(1.0 / view.scale) for face in faces]
        return ImageAnalysis(width=image.width, height=image.height, backend=self.detector.name, faces=faces)

    @staticmethod
    def select_face(analysis: ImageAnalysis, index: int | None = None, name: str = "the image") -> Face:
        """The face at `index` (0 = largest), the largest by default; `FaceNotFoundError` names the file."""
        if not analysis.faces:
            raise FaceNotFoundError(f"No face found in {name}; use a clear photo with the face visible.")
        if index is None:
            return analysis.faces[0]
        if not 0 <= index < len(analysis.faces):
            raise FaceNotFoundError(
                f"{name} has {len(analysis.faces)} face(s); face index {index} does not exist "
                f"(use 0 to {len(analysis.faces) - 1}, 0 is the largest)."
            )
        return analysis.faces[index]

    def find_face(self, image: Image.Image, index: int | None = None, name: str = "the image") -> Face:
        return self.select_face(self.analyze(image), index, name)

    def parse(self, image: Image.Image, face: Face) -> FaceParsing:
        return self.parser.parse(np.asarray(image), face)

    def embed(self, image: Image.Image, face: Face) -> np.ndarray:
        return self.embedder.embed(np.asarray(image), face)

    def similarity(self, image_a: Image.Image, image_b: Image.Image, index_a: int | None = None,
                   index_b: int | None = None, name_a: str = "the first image",
                   name_b: str = "the second image") -> Similarity:
        face_a = self.find_face(image_a, index_a, name_a)
        face_b = self.find_face(image_b, index_b, name_b)
        return compare(self.embedder, self.embed(image_a, face_a), self.embed(image_b, face_b))

    # -- FACT reference preprocessing (FACT.md §1) --------------------------------------------------------------

    def reference_crop(self, image: Image.Image, face: Face, parsing: FaceParsing | None = None) -> np.ndarray:
        """FACT's encoder input for one face: `uint8[112, 112, 3]` RGB.

        The photo is blacked out outside the head mask, the five landmarks of the most confident face are found
        again in that masked photo (as the release does), and the face is warped onto the ArcFace template.
        """
        parsing = parsing or self.parse(image, face)
        head = parsing.head_mask()
        masked = np.asarray(image) * head[..., None].astype(np.uint8)
        kps = self._redetect_kps(masked, head, fallback=face.kps)
        return align_face(masked, kps)

    def _redetect_kps(self, masked: np.ndarray, head: np.ndarray, fallback: np.ndarray) -> np.ndarray:
        ys, xs = np.nonzero(head)
        if len(xs) == 0:
            return fallback
        # Only the head is left in the masked photo; detect within its box (plus margin) to keep this cheap.
        margin = 0.25 * max(xs.max() - xs.min(), ys.max() - ys.min())
        x0, y0 = max(0, int(xs.min() - margin)), max(0, int(ys.min() - margin))
        x1, y1 = min(masked.shape[1], int(xs.max() + margin) + 1), min(masked.shape[0], int(ys.max() + margin) + 1)
        window = Image.fromarray(np.ascontiguousarray(masked[y0:y1, x0:x1]))
        faces = self.analyze(window).faces
        if not faces:
            return fallback
        best = max(faces, key=lambda f: f.score)
        return best.kps + np.array([x0, y0])

