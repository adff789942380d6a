"""Reference photos -> what FACT needs (aligned 112px crops, FACT.md §1) and what the identity check needs
(one identity embedding per photo). Also the identity score of a generated face against the references."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from facestudio.config import DEFAULT_MAX_PIXELS
from facestudio.engine.hashing import HashCache
from facestudio.face import FaceAnalyzer, load_image
from facestudio.face.identity import Similarity, compare, cosine_similarity
from facestudio.face.types import Face

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class ReferenceFaces:
    """N reference photos of one person, ready for the face encoder.

    Attributes:
        names, paths, sha256: per photo, in the order given.
        crops: `uint8[N, 112, 112, 3]`, head-masked and aligned onto the ArcFace template.
        embeddings: `float32[N, D]` identity embeddings (for the similarity shown with each result).
        warnings: e.g. a photo that looks like a different person than the first.
    """

    names: tuple[str, ...]
    paths: tuple[Path, ...]
    sha256: tuple[str, ...]
    crops: np.ndarray
    embeddings: np.ndarray
    warnings: tuple[str, ...]

    @property
    def mean_embedding(self) -> np.ndarray:
        """The person's mean identity direction (unit vectors averaged)."""
        unit = self.embeddings / np.maximum(np.linalg.norm(self.embeddings, axis=1, keepdims=True), 1e-12)
        return unit.mean(axis=0)

    def to_records(self) -> list[dict[str, str]]:
        return [{"name": n, "path": str(p), "sha256": h} for n, p, h in zip(self.names, self.paths, self.sha256,
                                                                               strict=True)]


def prepare_references(analyzer: FaceAnalyzer, photos: list[str | Path], hashes: HashCache,
                       max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int | None = None) -> ReferenceFaces:
    """Load each photo (refusing any over `max_pixels`), shrink it to `max_side` when given (the release recipe's
    step 0), find its largest face, and build FACT's crop and an identity embedding.

    Raises:
        `ImageLoadError`: a photo cannot be read. `FaceNotFoundError`: a photo has no face (names the file).
    """
    names, paths, digests, crops, embeddings, warnings = [], [], [], [], [], []
    for photo in photos:
        path = Path(photo)
        image = shrunk(load_image(path, name=path.name, max_pixels=max_pixels), max_side)
        face = analyzer.find_face(image, name=path.name)
        parsing = analyzer.parse(image, face)
        crops.append(analyzer.reference_crop(image, face, parsing))
        embeddings.append(np.asarray(analyzer.embed(image, face), dtype=np.float32))
        names.append(path.name)
        paths.append(path.resolve())
        digests.append(hashes.file(path))
    threshold = analyzer.embedder.threshold
    for name, embedding in zip(names[1:], embeddings[1:], strict=True):
        value = cosine_similarity(embeddings[0], embedding)
        if value < threshold:
            warnings.append(f"The face in {name} looks like a different person than the one in {names[0]} "
                            f"(similarity {value:.2f} < {threshold}); the result mixes both.")
    for warning in warnings:
        logger.warning(warning)
    return ReferenceFaces(tuple(names), tuple(paths), tuple(digests), np.stack(crops), np.stack(embeddings),
                          tuple(warnings))


def shrunk(image: Image.Image, max_side: int | None) -> Image.Image:
    """`image` with its longer side at most `max_side`, resized the way the release does (PIL's default filter)."""
    if max_side is None or max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    return image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))))


def result_similarity(analyzer: FaceAnalyzer, image: Image.Image, references: ReferenceFaces,
                      near: Face | None = None) -> Similarity | None:
    """The identity similarity of the generated face to the references; `None` when no face is found.

    For inpainting, `near` is the template's face that was replaced: the result face nearest to it is scored.
    """
    faces = analyzer.analyze(image).faces
    if not faces:
        return None
    face = faces[0]
    if near is not None:
        face = min(faces, key=lambda f: float(np.linalg.norm(f.center - near.center)))
    return compare(analyzer.embedder, analyzer.embed(image, face), references.mean_embedding)
