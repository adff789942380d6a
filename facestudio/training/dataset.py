"""Training data: a folder or .zip of photos becomes a FACT training dataset (FACT.md §1 and §7).

`prepare_dataset` keeps the photos training can use and says why it rejects the others. For each kept photo it
writes a square training image centred on the face, the face mask (FAIR's region), the head mask, the aligned
112x112 reference crop (the face encoder's input, FACT.md §1) and a caption, plus `manifest.json` (what training
reads, through `load_manifest`) and `report.json` (every photo, kept or rejected, with its reason).

Everything is built in a staging folder inside DATASET and moved into place at the end, `manifest.json` last: an
interrupted run, or one that keeps nothing, leaves a previous dataset as it was, and a folder with a manifest is
always complete.

Example:
    >>> from facestudio.face import FaceAnalyzer
    >>> report = prepare_dataset(Path("photos"), Path("dataset"), FaceAnalyzer(), PrepareSettings())
    >>> manifest = load_manifest(Path("dataset"))
    >>> manifest.path(manifest.items[0].image)
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

import cv2
import numpy as np
from PIL import Image

from facestudio import __version__
from facestudio.config import DEFAULT_INSIGHTFACE_ROOT, DEFAULT_MAX_PIXELS, DEFAULT_MAX_ZIP_BYTES
from facestudio.errors import DatasetError, FaceStudioError, ImageLoadError
from facestudio.face.analyzer import FaceAnalyzer
from facestudio.face.geometry import SquareCrop
from facestudio.face.image import load_image
from facestudio.face.quality import MIN_FACE_PX, MIN_SHARPNESS, SEVERAL_FACES_RATIO, SHARPNESS_SIZE, face_sharpness
from facestudio.face.types import Face
from facestudio.files import sha256_file, write_atomic

logger = logging.getLogger(__name__)

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
CAPTION_SUFFIX = ".txt"
CAPTION_TEMPLATE = "a photo of a {class_word}"

MANIFEST_NAME = "manifest.json"
REPORT_NAME = "report.json"
MANIFEST_FORMAT = "facestudio-dataset"
MANIFEST_VERSION = 1
#: The folders a dataset consists of, one file per kept photo in each: `<folder>/<identity>/<index>_<stem>.png`.
OUTPUT_FOLDERS = ("images", "face_masks", "head_masks", "references")
#: Written into DATASET before anything is replaced and kept there: a run interrupted between moving folders and
#: writing the manifest still leaves a folder that is recognisably a dataset (and may be replaced without asking).
MARKER_NAME = ".facestudio-dataset"
STAGING_PREFIX = ".facestudio-staging-"
_OWN_NAMES = frozenset((*OUTPUT_FOLDERS, MANIFEST_NAME, REPORT_NAME, MARKER_NAME))

#: Padding where the square crop reaches outside the photo. "reflect" (the default) mirrors the photo at its edge
#: (BORDER_REFLECT_101): backgrounds and clothes continue plausibly, where "black" teaches the model letterbox bars
#: and "edge" smears streaks. Each item records its `pad_fraction` so training can filter heavily padded crops.
PAD_MODES = {"reflect": cv2.BORDER_REFLECT_101, "edge": cv2.BORDER_REPLICATE, "black": cv2.BORDER_CONSTANT}

#: The detector scans for faces down to this size (the analyzer's default), below the keep threshold, so a small
#: face is reported as too small, and a small second face counts, instead of going unseen.
DETECTOR_MIN_FACE_PX = 30
MAX_ZIP_MEMBERS = 20_000
_ZIP_JUNK = ("__MACOSX",)

# Why a photo was rejected (`PrepareItem.reason`).
BROKEN = "broken"
NO_FACE = "no_face"
SEVERAL_FACES = "several_faces"
TOO_SMALL = "too_small"
BLURRY = "blurry"
UNPARSED = "unparsed"


# -- settings, items, reports ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrepareSettings:
    """How photos are screened and cropped.

    Args:
        class_word: `str`, *optional*, defaults to "person". Fills the caption template "a photo of a {class_word}".
        min_face_px: `int`, *optional*, defaults to 96. Narrower faces are rejected: the crop would upscale them
            more than 2x (the face is ~205 px wide in a 512 crop), which teaches blur.
        min_sharpness: `float`, *optional*, defaults to 50. Variance of the Laplacian of the face resized to
            112x112 grey; sharp photos measure 320-1640, a Gaussian blur of 1.5% of the face width about 26-44.
        face_fraction: `float`, *optional*, defaults to 0.4. Face width over crop width.
        size: `int`, *optional*, defaults to 512. Side of the training images and masks (SD1.5's resolution).
        pad: `str`, *optional*, defaults to "reflect". How the crop is filled outside the photo (see `PAD_MODES`).
        several_faces_ratio: `float`, *optional*, defaults to 0.5. A second face with at least this fraction of the
            largest face's area makes the photo ambiguous (whose identity is it?), so it is rejected.
        overwrite: `bool`, *optional*, defaults to False. Write into a non-empty folder that is not a dataset.
    """

    class_word: str = "person"
    min_face_px: int = MIN_FACE_PX
    min_sharpness: float = MIN_SHARPNESS
    face_fraction: float = 0.4
    size: int = 512
    pad: str = "reflect"
    several_faces_ratio: float = SEVERAL_FACES_RATIO
    overwrite: bool = False

    def __post_init__(self):
        self.check()

    def check(self) -> None:
        """Refuse settings that cannot give a usable dataset, before any photo is read."""
        if not self.class_word.strip():
            raise DatasetError("`class_word` must not be empty; use a word such as 'person', 'man' or 'woman'.")
        if self.min_face_px < 1:
            raise DatasetError(f"`min_face_px` must be at least 1; got {self.min_face_px}.")
        if self.min_sharpness < 0:
            raise DatasetError(f"`min_sharpness` must be >= 0 (0 keeps every photo); got {self.min_sharpness}.")
        if not 0.1 <= self.face_fraction <= 0.9:
            raise DatasetError(f"`face_fraction` must be in [0.1, 0.9]; got {self.face_fraction}.")
        if not (64 <= self.size <= 2048 and self.size % 8 == 0):
            raise DatasetError(f"`size` must be a multiple of 8 from 64 to 2048; got {self.size}.")
        if self.pad not in PAD_MODES:
            raise DatasetError(f"`pad` must be one of {', '.join(PAD_MODES)}; got {self.pad!r}.")
        if not 0 < self.several_faces_ratio <= 1:
            raise DatasetError(f"`several_faces_ratio` must be in (0, 1]; got {self.several_faces_ratio}.")

    @property
    def default_caption(self) -> str:
        return CAPTION_TEMPLATE.format(class_word=self.class_word.strip())

    def to_dict(self) -> dict:
        """The settings that shaped the data (`overwrite` only decides where it may go, so it is left out)."""
        data = asdict(self)
        data.pop("overwrite")
        data.update(caption_template=CAPTION_TEMPLATE, sharpness_size=SHARPNESS_SIZE)
        return data


@dataclass(frozen=True)
class DatasetItem:
    """One kept photo in a dataset: where its files are (relative to the dataset folder) and its face in them.

    `bbox` (`x0, y0, x1, y1`) and `kps` (the five landmarks in FACT's order) are in pixels of the training image,
    rounded to 0.01 px (so an item equals what its manifest says); `pad_fraction` is the share of the image that
    lies outside the photo.
    """

    identity: str
    source: str
    sha256: str
    image: str
    face_mask: str
    head_mask: str
    reference: str
    caption: str
    bbox: tuple[float, float, float, float]
    kps: tuple[tuple[float, float], ...]
    pad_fraction: float = 0.0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["bbox"] = list(self.bbox)
        data["kps"] = [list(point) for point in self.kps]
        return data

    @classmethod
    def from_dict(cls, data: dict, where: str) -> DatasetItem:
        try:
            return cls(
                identity=str(data["identity"]), source=str(data["source"]), sha256=str(data["sha256"]),
                image=str(data["image"]), face_mask=str(data["face_mask"]), head_mask=str(data["head_mask"]),
                reference=str(data["reference"]), caption=str(data["caption"]),
                bbox=tuple(float(v) for v in data["bbox"]),
                kps=tuple((float(x), float(y)) for x, y in data["kps"]),
                pad_fraction=float(data.get("pad_fraction", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise DatasetError(f"{where} is malformed ({type(err).__name__}: {err}); prepare the dataset again.") from err

    def files(self) -> tuple[str, str, str, str]:
        return (self.image, self.face_mask, self.head_mask, self.reference)


@dataclass(frozen=True)
class PrepareItem:
    """What happened to one photo: kept (with its `entry`), or rejected with a `reason` code and a `detail` sentence.

    `face_px` (face width in the photo) and `sharpness` are filled as far as the checks got.
    """

    source: str
    identity: str
    kept: bool
    reason: str | None = None
    detail: str = ""
    face_px: float | None = None
    sharpness: float | None = None
    entry: DatasetItem | None = None

    def to_dict(self) -> dict:
        return {
            "source": self.source, "identity": self.identity, "status": "kept" if self.kept else "rejected",
            "reason": self.reason, "detail": self.detail,
            "face_px": None if self.face_px is None else round(self.face_px, 1),
            "sharpness": None if self.sharpness is None else round(self.sharpness, 1),
            "image": self.entry.image if self.entry else None,
        }


@dataclass(frozen=True)
class PrepareReport:
    """Every photo found, in order, with the identity warnings; `written` is False when nothing was kept."""

    source: str
    out: str
    backend: str
    settings: PrepareSettings
    items: tuple[PrepareItem, ...]
    warnings: tuple[str, ...]
    written: bool

    @property
    def kept(self) -> tuple[PrepareItem, ...]:
        return tuple(item for item in self.items if item.kept)

    @property
    def rejected(self) -> tuple[PrepareItem, ...]:
        return tuple(item for item in self.items if not item.kept)

    def to_dict(self) -> dict:
        return {
            "source": self.source, "out": self.out, "backend": self.backend, "written": self.written,
            "settings": self.settings.to_dict(), "photos": len(self.items), "kept": len(self.kept),
            "rejected": len(self.rejected), "warnings": list(self.warnings),
            "items": [item.to_dict() for item in self.items],
        }


class ItemCallback(Protocol):
    """Called after each photo, for progress: the item, how many photos are done, how many there are."""

    def __call__(self, item: PrepareItem, done: int, total: int) -> None: ...


@dataclass(frozen=True)
class DatasetManifest:
    """A prepared dataset as training reads it; `path(relative)` resolves an item's file."""

    root: Path
    format_version: int
    settings: dict
    identities: tuple[str, ...]
    items: tuple[DatasetItem, ...]

    def path(self, relative: str) -> Path:
        return self.root / relative

    def items_of(self, identity: str) -> tuple[DatasetItem, ...]:
        return tuple(item for item in self.items if item.identity == identity)


def preparation_analyzer(backend: str, settings: PrepareSettings,
                         insightface_root: Path = DEFAULT_INSIGHTFACE_ROOT) -> FaceAnalyzer:
    """The face analyzer `prepare_dataset` wants for `settings` (see `DETECTOR_MIN_FACE_PX`); close it after use."""
    return FaceAnalyzer(backend=backend, min_face_px=min(DETECTOR_MIN_FACE_PX, settings.min_face_px),
                        insightface_root=insightface_root)


# -- the source: a folder or a zip of photos ------------------------------------------------------------------------


@dataclass(frozen=True)
class SourcePhoto:
    """A photo to consider: its file on disk, its path inside PHOTOS (posix), identity, index among the identity's
    photos, the name messages use, and the `<stem>.txt` caption file beside it, if any."""

    path: Path
    relative: str
    identity: str
    index: int
    display: str
    caption_path: Path | None = None

    @property
    def stem(self) -> str:
        return PurePosixPath(self.relative).stem


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name in _ZIP_JUNK


def _is_photo(name: str) -> bool:
    return name.lower().endswith(PHOTO_SUFFIXES)


def scan_photos(root: Path, default_identity: str, display_prefix: str) -> list[SourcePhoto]:
    """Photos under `root`, sorted. A photo in `root` itself belongs to `default_identity`; one anywhere below a
    sub-folder belongs to that sub-folder's identity. Hidden files and folders are skipped."""
    found: list[tuple[str, str, Path, Path | None]] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not _is_hidden(d))
        captions = {Path(name).stem: Path(folder) / name for name in sorted(files)
                    if name.lower().endswith(CAPTION_SUFFIX) and not _is_hidden(name)}
        for name in files:
            if _is_hidden(name) or not _is_photo(name):
                continue
            path = Path(folder) / name
            relative = path.relative_to(root).as_posix()
            parts = PurePosixPath(relative).parts
            identity = parts[0] if len(parts) > 1 else default_identity
            found.append((identity, relative, path, captions.get(path.stem)))
    found.sort(key=lambda entry: (entry[0], entry[1]))
    photos: list[SourcePhoto] = []
    counts: dict[str, int] = {}
    for identity, relative, path, caption_path in found:
        index = counts.get(identity, 0)
        counts[identity] = index + 1
        photos.append(SourcePhoto(path, relative, identity, index, f"{display_prefix}{relative}", caption_path))
    return photos


@dataclass(frozen=True)
class _SourceTree:
    root: Path
    identity: str
    display_prefix: str


@contextlib.contextmanager
def _open_source(source: Path, max_zip_bytes: int) -> Iterator[_SourceTree]:
    """A folder as it is; a .zip extracted safely into a temporary folder that is removed afterwards."""
    if source.is_dir():
        yield _SourceTree(source, source.resolve().name, f"{source}{os.sep}")
        return
    with tempfile.TemporaryDirectory(prefix="facestudio-zip-") as folder:
        root = Path(folder)
        extract_zip(source, root, max_zip_bytes)
        identity = source.stem
        visible = [entry for entry in root.iterdir() if not _is_hidden(entry.name)]
        # Zipping a folder usually stores the folder itself: read "photos.zip: photos/..." as that folder.
        if len(visible) == 1 and visible[0].is_dir():
            root, identity = visible[0], visible[0].name
        inside = root.relative_to(folder).as_posix()
        yield _SourceTree(root, identity, f"{source}:" + ("" if inside == "." else f"{inside}/"))


def _check_source(source: Path) -> None:
    if not source.exists():
        raise DatasetError(f"The photo folder {source} does not exist.")
    if source.is_file() and source.suffix.lower() != ".zip":
        raise DatasetError(f"{source} is neither a folder nor a .zip of photos.")


def _unsafe_member(name: str) -> bool:
    """Zip-slip: an absolute path (`/x`, `C:x`, `\\\\server`) or a `..` that would climb out of the folder."""
    name = name.replace("\\", "/")
    return name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in PurePosixPath(name).parts


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _wanted(info: zipfile.ZipInfo) -> bool:
    parts = PurePosixPath(info.filename.replace("\\", "/")).parts
    if info.is_dir() or _is_symlink(info) or not parts or any(_is_hidden(part) for part in parts):
        return False
    return _is_photo(parts[-1]) or parts[-1].lower().endswith(CAPTION_SUFFIX)


def extract_zip(archive: Path, dest: Path, max_bytes: int = DEFAULT_MAX_ZIP_BYTES,
                max_members: int = MAX_ZIP_MEMBERS) -> int:
    """Extract the photos and captions of `archive` into `dest`; returns how many files were written.

    Every member is checked before anything is written: an absolute path or `..` refuses the whole archive (it was
    crafted to write elsewhere), symbolic links and other files are skipped, and the member count and the total
    uncompressed size are capped (`max_bytes`, default 2 GiB; the fronts pass `StudioSettings.max_zip_bytes`, i.e.
    FACESTUDIO_MAX_ZIP_BYTES), counted again while extracting because a header can lie.
    """
    limit = int(max_bytes)
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = _checked_members(archive, bundle.infolist(), limit, max_members)
            written = 0
            for info in members:
                written += _extract_member(bundle, info, dest, archive, limit - written)
            return len(members)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as err:
        raise DatasetError(f"{archive} is not a readable zip archive ({err}).") from err
    except RuntimeError as err:  # zipfile raises RuntimeError for encrypted members
        raise DatasetError(f"{archive} cannot be extracted ({err}); use an archive without a password.") from err
    except OSError as err:
        raise DatasetError(f"{archive} cannot be read or extracted ({err.strerror or err}).") from err


def _checked_members(archive: Path, infos: list[zipfile.ZipInfo], limit: int, max_members: int) -> list[zipfile.ZipInfo]:
    if len(infos) > max_members:
        raise DatasetError(f"{archive} has {len(infos)} members, over the limit of {max_members}; split it up.")
    for info in infos:
        if _unsafe_member(info.filename):
            raise DatasetError(f"{archive} contains the unsafe member {info.filename!r} (an absolute path or '..'); "
                               "refused to extract it.")
    members = [info for info in infos if _wanted(info)]
    skipped_links = sum(1 for info in infos if _is_symlink(info))
    if skipped_links:
        logger.info("%s: skipped %d symbolic link(s)", archive, skipped_links)
    total = sum(info.file_size for info in members)
    if total > limit:
        raise DatasetError(f"{archive} unpacks to {total / 1e6:.0f} MB, over the limit of {limit / 1e6:.0f} MB; "
                           "split it up or raise FACESTUDIO_MAX_ZIP_BYTES.")
    return members


def _extract_member(bundle: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, archive: Path, budget: int) -> int:
    target = (dest / PurePosixPath(info.filename.replace("\\", "/"))).resolve()
    if dest.resolve() not in target.parents:
        raise DatasetError(f"{archive} contains the unsafe member {info.filename!r}; refused to extract it.")
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with bundle.open(info) as reader, target.open("wb") as writer:
        while chunk := reader.read(1 << 20):
            written += len(chunk)
            if written > budget:
                raise DatasetError(f"{archive} unpacks to more than its headers say, over the size limit; refused.")
            writer.write(chunk)
    return written


# -- one photo ------------------------------------------------------------------------------------------------------


class _Rejected(Exception):
    """Internal: a photo fails a check (carries the reason code and the sentence for the report)."""

    def __init__(self, reason: str, detail: str, sharpness: float | None = None):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.sharpness = sharpness


def _screen(analysis_faces: list[Face], pixels: np.ndarray, settings: PrepareSettings) -> tuple[Face, float]:
    """The face to keep and its sharpness, or `_Rejected`: no face, several similar faces, too small, too blurry."""
    if not analysis_faces:
        raise _Rejected(NO_FACE, "no face found.")
    face = analysis_faces[0]
    if len(analysis_faces) > 1 and analysis_faces[1].area >= settings.several_faces_ratio * face.area:
        ratio = analysis_faces[1].area / max(face.area, 1e-6)
        raise _Rejected(SEVERAL_FACES, f"{len(analysis_faces)} faces, the second {ratio:.0%} of the largest's area; "
                                       "use photos of the person alone.")
    if face.width < settings.min_face_px:
        raise _Rejected(TOO_SMALL, f"the face is {face.width:.0f} px wide, below the minimum of "
                                   f"{settings.min_face_px} px; use a larger or closer photo.")
    sharpness = face_sharpness(pixels, face)
    if sharpness < settings.min_sharpness:
        raise _Rejected(BLURRY, f"the face is too blurry (sharpness {sharpness:.0f}, minimum "
                                f"{settings.min_sharpness:g}).", sharpness)
    return face, sharpness


@dataclass(frozen=True)
class TrainingCrop:
    """The square training image around a face, the face in its coordinates, and how much of it is padding."""

    pixels: np.ndarray
    face: Face
    pad_fraction: float


def _center_matrix(scale_x: float, scale_y: float, shift_x: float, shift_y: float) -> np.ndarray:
    """`warpAffine` maps pixel centres; landmarks use continuous coordinates (a pixel spans [i, i+1]). This turns
    the continuous map `p -> scale * p + shift` into the pixel-centre matrix, so landmarks and pixels agree."""
    return np.array([[scale_x, 0.0, shift_x + 0.5 * scale_x - 0.5],
                     [0.0, scale_y, shift_y + 0.5 * scale_y - 0.5]], dtype=np.float64)


def _pad_fraction(window: SquareCrop, width: int, height: int) -> float:
    inside_x = max(0.0, min(window.x0 + window.side, width) - max(window.x0, 0.0))
    inside_y = max(0.0, min(window.y0 + window.side, height) - max(window.y0, 0.0))
    return 1.0 - inside_x * inside_y / window.side**2


def crop_around_face(pixels: np.ndarray, face: Face, settings: PrepareSettings) -> TrainingCrop:
    """A `size`-pixel square centred on the face box, the face `face_fraction` of its width, padded by `pad`.

    A crop that shrinks the photo is first shrunk with area averaging, so a large face is not aliased by the warp.
    """
    height, width = pixels.shape[:2]
    window = SquareCrop.around(face.center, face.width / settings.face_fraction, settings.size)
    scale = window.scale
    if scale < 1.0:
        small = cv2.resize(pixels, (max(1, round(width * scale)), max(1, round(height * scale))),
                           interpolation=cv2.INTER_AREA)
        step_x, step_y = small.shape[1] / width, small.shape[0] / height
        matrix = _center_matrix(scale / step_x, scale / step_y, -window.x0 * scale, -window.y0 * scale)
        source, interpolation = small, cv2.INTER_LINEAR
    else:
        matrix = _center_matrix(scale, scale, -window.x0 * scale, -window.y0 * scale)
        source, interpolation = pixels, cv2.INTER_CUBIC
    out = cv2.warpAffine(source, matrix, (settings.size, settings.size), flags=interpolation,
                         borderMode=PAD_MODES[settings.pad], borderValue=(0, 0, 0))
    offset = np.array([window.x0, window.y0])
    moved = Face(
        bbox=(face.bbox - np.tile(offset, 2)) * scale, score=face.score, kps=(face.kps - offset) * scale,
        landmarks=None if face.landmarks is None else (face.landmarks - offset) * scale,
        landmarks_source=face.landmarks_source,
    )
    return TrainingCrop(out, moved, _pad_fraction(window, width, height))


def _caption(photo: SourcePhoto, settings: PrepareSettings) -> str:
    """The text of `<stem>.txt` beside the photo (any case of `.txt`), on one line, else the template."""
    if photo.caption_path is None:
        return settings.default_caption
    try:
        text = " ".join(photo.caption_path.read_text(encoding="utf-8-sig", errors="replace").split())
    except OSError as err:
        logger.warning("cannot read the caption %s (%s); using the default caption", photo.caption_path, err)
        return settings.default_caption
    return text or settings.default_caption


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, "PNG", compress_level=4)
    return buffer.getvalue()


def _mask_png(mask: np.ndarray) -> bytes:
    return _png_bytes(np.where(mask, 255, 0).astype(np.uint8))


def _process(photo: SourcePhoto, analyzer: FaceAnalyzer, settings: PrepareSettings, staging: Path,
             max_pixels: int) -> PrepareItem:
    """Screen one photo and, when it passes, write its four files into `staging`. Never raises for a bad photo."""

    def rejected(reason: str, detail: str, **measures) -> PrepareItem:
        return PrepareItem(photo.relative, photo.identity, kept=False, reason=reason, detail=detail, **measures)

    try:
        image = load_image(photo.path, name=photo.display, max_pixels=max_pixels)
        digest = sha256_file(photo.path)
    except ImageLoadError as err:
        return rejected(BROKEN, str(err))
    except OSError as err:
        return rejected(BROKEN, f"{photo.display} cannot be read ({err.strerror or err}).")
    pixels = np.asarray(image)
    faces = analyzer.analyze(image).faces
    try:
        face, sharpness = _screen(faces, pixels, settings)
    except _Rejected as rejection:
        return rejected(rejection.reason, rejection.detail, face_px=faces[0].width if faces else None,
                        sharpness=rejection.sharpness)
    crop = crop_around_face(pixels, face, settings)
    crop_image = Image.fromarray(crop.pixels)
    parsing = analyzer.parse(crop_image, crop.face)
    face_mask, head_mask = parsing.face_mask, parsing.head_mask()
    if not face_mask.any():
        return rejected(UNPARSED, "the face could not be segmented in the crop.", face_px=face.width,
                        sharpness=sharpness)
    reference = analyzer.reference_crop(crop_image, crop.face, parsing)
    entry = _write_item(photo, staging, crop, (face_mask, head_mask, reference), _caption(photo, settings), digest)
    return PrepareItem(photo.relative, photo.identity, kept=True, face_px=face.width, sharpness=sharpness,
                       entry=entry)


def _write_item(photo: SourcePhoto, staging: Path, crop: TrainingCrop, outputs: tuple[np.ndarray, ...],
                caption: str, digest: str) -> DatasetItem:
    face_mask, head_mask, reference = outputs
    name = f"{photo.identity}/{photo.index:03d}_{photo.stem}.png"
    paths = {folder: f"{folder}/{name}" for folder in OUTPUT_FOLDERS}
    contents = {"images": _png_bytes(crop.pixels), "face_masks": _mask_png(face_mask),
                "head_masks": _mask_png(head_mask), "references": _png_bytes(reference)}
    for folder, relative in paths.items():
        write_atomic(staging / relative, contents[folder])
    return DatasetItem(
        identity=photo.identity, source=photo.relative, sha256=digest, image=paths["images"],
        face_mask=paths["face_masks"], head_mask=paths["head_masks"], reference=paths["references"],
        caption=caption, bbox=tuple(round(float(v), 2) for v in crop.face.bbox),
        kps=tuple((round(float(x), 2), round(float(y), 2)) for x, y in crop.face.kps),
        pad_fraction=round(crop.pad_fraction, 4),
    )


# -- the output folder ----------------------------------------------------------------------------------------------


def _visible_entries(folder: Path) -> list[Path]:
    return [entry for entry in folder.iterdir() if not entry.name.startswith(STAGING_PREFIX)]


def is_dataset_folder(folder: Path) -> bool:
    """An empty folder, or a FaceStudio dataset: its marker file, or a manifest that says so. Folder names alone
    are no proof: a user's own `images/` must never be replaced without `overwrite`."""
    if not _visible_entries(folder) or (folder / MARKER_NAME).is_file():
        return True
    try:
        return json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8")).get("format") == MANIFEST_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def check_output_folder(out: Path, source: Path, overwrite: bool) -> None:
    """Refuse, before any work, an output that would clobber someone's files or the photos themselves."""
    if out.exists() and not out.is_dir():
        raise DatasetError(f"The dataset folder {out} is a file; give a folder.")
    out_real, source_real = out.resolve(), source.resolve()
    if out_real == source_real or source_real in out_real.parents:
        raise DatasetError(f"The dataset folder {out} is inside the photos {source}; choose a folder outside them.")
    if out_real in source_real.parents and source_real.relative_to(out_real).parts[0] in _OWN_NAMES:
        raise DatasetError(f"The photos {source} are inside the dataset folder {out} where the dataset would replace "
                           "them; move them or choose another folder.")
    if not out.exists() or overwrite or is_dataset_folder(out):
        return
    raise DatasetError(f"The dataset folder {out} is not empty and is not a FaceStudio dataset; choose an empty "
                       "folder or overwrite it.", field="overwrite")


def _json_bytes(data: dict) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _commit(staging: Path, out: Path, manifest: dict, report: dict) -> None:
    """Move the staged folders into `out`, replacing a previous dataset's; the manifest goes last, so a folder with
    a manifest is always complete. Other files in `out` are left alone."""
    replaced = staging / "replaced"
    replaced.mkdir()
    write_atomic(out / MARKER_NAME, _json_bytes({"format": MANIFEST_FORMAT, "see": MANIFEST_NAME}))
    with contextlib.suppress(FileNotFoundError):
        os.remove(out / MANIFEST_NAME)
    for folder in OUTPUT_FOLDERS:
        target = out / folder
        if target.exists() or target.is_symlink():
            os.replace(target, replaced / folder)
        os.replace(staging / folder, target)
    write_atomic(out / REPORT_NAME, _json_bytes(report))
    write_atomic(out / MANIFEST_NAME, _json_bytes(manifest))


def _remove_stale_staging(out: Path, keep: Path) -> None:
    """Staging folders left by interrupted runs are ours and useless; remove them."""
    for entry in out.iterdir():
        if entry.name.startswith(STAGING_PREFIX) and entry != keep:
            shutil.rmtree(entry, ignore_errors=True)


# -- the whole run --------------------------------------------------------------------------------------------------


def _identity_warnings(photos: list[SourcePhoto], items: list[PrepareItem]) -> list[str]:
    kept: dict[str, int] = {photo.identity: 0 for photo in photos}
    for item in items:
        kept[item.identity] += int(item.kept)
    return [f"identity {name!r} has {count} kept photo(s); training's face shuffle needs 2 or more of one person."
            for name, count in kept.items() if count < 2]


def _manifest(source: Path, backend: str, settings: PrepareSettings, entries: list[DatasetItem]) -> dict:
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.identity] = counts.get(entry.identity, 0) + 1
    return {
        "format": MANIFEST_FORMAT, "format_version": MANIFEST_VERSION, "created_by": f"facestudio {__version__}",
        "source": str(source), "backend": backend, "settings": settings.to_dict(),
        "identities": [{"name": name, "photos": count} for name, count in counts.items()],
        "items": [entry.to_dict() for entry in entries],
    }


def _make_folder(out: Path) -> bool:
    """Create `out` if needed; True when this run created it (so an empty run can remove it again)."""
    if out.exists():
        return False
    try:
        out.mkdir(parents=True)
    except OSError as err:
        raise DatasetError(f"Cannot create the dataset folder {out}: {err.strerror or err}.") from err
    return True


def prepare_dataset(source: Path, out: Path, analyzer: FaceAnalyzer, settings: PrepareSettings,
                    on_item: ItemCallback | None = None, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                    max_zip_bytes: int = DEFAULT_MAX_ZIP_BYTES) -> PrepareReport:
    """Turn the photos in `source` (a folder or .zip; sub-folders are identities) into a dataset in `out`.

    A photo that cannot be used is reported with its reason and never stops the run. Nothing in `out` changes
    unless at least one photo is kept (`PrepareReport.written`).

    Args:
        source: `Path`, a folder of photos, or of one folder per person, or a .zip of either.
        out: `Path`, the dataset folder: new, empty, a previous dataset, or anything with `settings.overwrite`.
        analyzer: `FaceAnalyzer`, detects, parses and aligns faces (its detector should look for faces smaller
            than `settings.min_face_px`, so small faces are reported as too small rather than missing).
        settings: `PrepareSettings`, the screening thresholds and crop.
        on_item: `ItemCallback`, *optional*, called after each photo.
        max_pixels, max_zip_bytes: `int`, *optional*, the largest photo and the largest unpacked .zip accepted
            (defaults in `facestudio.config`; the fronts pass `StudioSettings`' values).
    """
    source, out = Path(source), Path(out)
    _check_source(source)
    check_output_folder(out, source, settings.overwrite)
    with _open_source(source, max_zip_bytes) as tree:
        photos = scan_photos(tree.root, tree.identity, tree.display_prefix)
        if not photos:
            raise DatasetError(f"No photos found in {source} (looked for {', '.join(PHOTO_SUFFIXES)}).")
        created = _make_folder(out)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
        try:
            items = _process_all(photos, analyzer, settings, staging, on_item, max_pixels)
            entries = [item.entry for item in items if item.entry is not None]
            report = PrepareReport(str(source), str(out), analyzer.backend, settings, tuple(items),
                                   tuple(_identity_warnings(photos, items)), written=bool(entries))
            if entries:
                _commit(staging, out, _manifest(source, analyzer.backend, settings, entries), report.to_dict())
                _remove_stale_staging(out, keep=staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            if created and not any(out.iterdir()):
                out.rmdir()
    for warning in report.warnings:
        logger.info("%s", warning)
    return report


def _process_all(photos: list[SourcePhoto], analyzer: FaceAnalyzer, settings: PrepareSettings, staging: Path,
                 on_item: ItemCallback | None, max_pixels: int) -> list[PrepareItem]:
    items: list[PrepareItem] = []
    for done, photo in enumerate(photos, start=1):
        try:
            item = _process(photo, analyzer, settings, staging, max_pixels)
        except FaceStudioError as err:  # e.g. a detector refusing an odd image: that photo only
            item = PrepareItem(photo.relative, photo.identity, kept=False, reason=BROKEN, detail=str(err))
        logger.info("%s: %s", photo.relative, "kept" if item.kept else f"rejected ({item.reason}) {item.detail}")
        items.append(item)
        if on_item is not None:
            on_item(item, done, len(photos))
    return items


# -- reading a dataset ----------------------------------------------------------------------------------------------


def _safe_relative(relative: str, where: str) -> str:
    """Paths in a manifest are data: refuse one that would leave the dataset folder."""
    if _unsafe_member(relative):
        raise DatasetError(f"{where} lists the path {relative!r}, which leaves the dataset folder; refused.")
    return relative


def load_manifest(path: Path, check_files: bool = True) -> DatasetManifest:
    """Read a dataset written by `prepare_dataset`; `path` is the dataset folder or its `manifest.json`.

    With `check_files`, every file an item lists must exist, so training fails at once rather than hours in.
    """
    path = Path(path)
    manifest_path = path / MANIFEST_NAME if path.is_dir() else path
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise DatasetError(f"{manifest_path} does not exist; prepare the dataset with `python -m facestudio "
                           "prepare PHOTOS --out DATASET`.") from err
    except (OSError, ValueError) as err:
        raise DatasetError(f"{manifest_path} cannot be read as JSON ({err}).") from err
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise DatasetError(f"{manifest_path} is not a FaceStudio dataset manifest.")
    version = data.get("format_version")
    if version != MANIFEST_VERSION:
        raise DatasetError(f"{manifest_path} has format version {version!r}; this FaceStudio reads version "
                           f"{MANIFEST_VERSION}; prepare the dataset again.")
    items = tuple(DatasetItem.from_dict(entry, str(manifest_path)) for entry in data.get("items") or [])
    root = manifest_path.parent
    for item in items:
        for relative in item.files():
            _safe_relative(relative, str(manifest_path))
            if check_files and not (root / relative).is_file():
                raise DatasetError(f"{manifest_path} lists {relative}, which is missing; prepare the dataset again.")
    identities = tuple(dict.fromkeys(item.identity for item in items))
    return DatasetManifest(root=root, format_version=version, settings=dict(data.get("settings") or {}),
                           identities=identities, items=items)
