"""A person's reference photos: checked for use (the Identity tab) and kept under a name for later (on disk).

`inspect_photos` says, per photo, which faces were found, which one is used, and what is wrong (no face, several
faces, small, blurry, a different person than the first photo), with the pictures the UI shows: the landmarks
overlay, FACT's aligned 112 px crop and the head mask.

`IdentityStore` keeps named identities in `FACESTUDIO_HOME/identities/<slug>/`: the photos re-encoded as PNG (EXIF
rotation applied and metadata dropped) and `identity.json`. When a photo's chosen face is not its largest, the
stored photo is cropped around the chosen face, so every consumer (which takes the largest face) sees the right one.
An identity folder is built beside its final place and renamed into it: a reader never sees half of one.
"""

from __future__ import annotations

import builtins
import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from facestudio.config import DEFAULT_MAX_PIXELS
from facestudio.engine.requests import MAX_REFERENCE_PHOTOS
from facestudio.errors import FaceNotFoundError, InvalidRequestError
from facestudio.files import write_atomic
from facestudio.text import slugify

if TYPE_CHECKING:
    from facestudio.face import FaceAnalyzer
    from facestudio.face.attributes import Attributes
    from facestudio.face.types import Face

# The face layer (OpenCV, detectors) is imported where photos are read, so listing and naming identities stays light
# (the studio's page builds with this module and must start in seconds).

logger = logging.getLogger(__name__)

IDENTITY_FILE = "identity.json"
MAX_SUBJECT_LENGTH = 120
SUBJECT_HINT = ("Type the subject words (e.g. 'a woman, 30-year-old'): the release starts every prompt with them; "
                "with insightface's model pack on disk they are filled in from the photos.")
IDENTITY_FORMAT = "facestudio-identity"
MAX_NAME_LENGTH = 64
#: Side of the square kept around a chosen face that is not the photo's largest, in face widths.
CHOSEN_FACE_WINDOW = 2.6


@dataclass
class PhotoCheck:
    """One reference photo as the studio sees it.

    Attributes:
        name, path: the photo. faces: every face found, largest first. face_index: the face used (`None`: none).
        warnings: one sentence per problem. sharpness: of the face used. overlay: the photo with boxes, numbered
        faces, landmarks and regions. crop: FACT's aligned `uint8[112, 112, 3]` input. head_mask: `uint8[H, W]`.
    """

    name: str
    path: Path
    width: int
    height: int
    faces: list[Face]
    face_index: int | None
    warnings: list[str]
    sharpness: float | None = None
    overlay: Image.Image | None = None
    crop: np.ndarray | None = None
    head_mask: np.ndarray | None = None
    embedding: np.ndarray | None = field(default=None, repr=False)
    attributes: Attributes | None = None  # apparent gender/age of the face used (None without the model)

    def to_dict(self) -> dict:
        return {
            "photo": self.name, "width": self.width, "height": self.height, "faces": len(self.faces),
            "face_used": self.face_index,
            "face_px": None if self.face_index is None else round(self.faces[self.face_index].width),
            "sharpness": None if self.sharpness is None else round(self.sharpness, 1),
            "boxes": [[round(float(v), 1) for v in face.bbox] for face in self.faces],
            "warnings": list(self.warnings),
        }


@dataclass
class IdentityCheck:
    """All photos of one person, and the warnings that concern them together (a different person)."""

    photos: list[PhotoCheck]
    warnings: list[str]
    #: The release's words for the person ("a beautiful woman, 25-year-old") from the gender/age model, or "" when
    #: there is none (insightface's pack not on disk): then `SUBJECT_HINT` tells the user to type them.
    suggested_subject: str = ""

    @property
    def usable(self) -> list[PhotoCheck]:
        return [photo for photo in self.photos if photo.face_index is not None]

    @property
    def all_warnings(self) -> list[str]:
        return [w for photo in self.photos for w in photo.warnings] + self.warnings

    def to_dict(self) -> dict:
        return {"photos": [p.to_dict() for p in self.photos], "warnings": list(self.warnings),
                "usable": len(self.usable), "suggested_subject": self.suggested_subject}


def parse_face_indexes(text: str | None, count: int) -> list[int | None]:
    """'0, 1, 0' -> [0, 1, 0]: the face used in each photo (0 = largest); missing entries mean the largest."""
    parts = [part.strip() for part in (text or "").replace(";", ",").split(",")]
    parts = [part for part in parts if part]
    if len(parts) > count:
        raise InvalidRequestError(f"Give at most one face number per photo ({count}); got {len(parts)}.")
    indexes: list[int | None] = []
    for part in parts:
        if not part.isdigit():
            raise InvalidRequestError(f"Face numbers are whole numbers from 0 (the largest face); got {part!r}.")
        indexes.append(int(part))
    return indexes + [None] * (count - len(indexes))


def inspect_photos(analyzer: FaceAnalyzer, paths: list[str | Path], face_indexes: list[int | None] | None = None, *,
                   names: list[str] | None = None, min_face_px: int | None = None,
                   min_sharpness: float | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> IdentityCheck:
    """Check 1-8 photos of one person; `ImageLoadError` names a photo that cannot be read (or is over `max_pixels`).

    `min_face_px` / `min_sharpness` default to the thresholds dataset preparation rejects with.
    """
    from facestudio.face import quality
    from facestudio.face.identity import cosine_similarity

    min_face_px = quality.MIN_FACE_PX if min_face_px is None else min_face_px
    min_sharpness = quality.MIN_SHARPNESS if min_sharpness is None else min_sharpness
    if not paths:
        raise InvalidRequestError("Upload at least one photo of the person.")
    if len(paths) > MAX_REFERENCE_PHOTOS:
        raise InvalidRequestError(f"Use at most {MAX_REFERENCE_PHOTOS} photos of one person; got {len(paths)}.")
    face_indexes = face_indexes or [None] * len(paths)
    names = names or [Path(p).name for p in paths]
    photos = [_inspect_one(analyzer, Path(path), name, index, min_face_px, min_sharpness, max_pixels)
              for path, name, index in zip(paths, names, face_indexes, strict=True)]
    warnings = []
    # (photo, embedding) of each photo with a face; the others are compared with the first.
    usable = [(photo, photo.embedding) for photo in photos if photo.embedding is not None]
    threshold = analyzer.embedder.threshold
    for photo, embedding in usable[1:]:
        first, first_embedding = usable[0]
        value = cosine_similarity(first_embedding, embedding)
        if value < threshold:
            warnings.append(f"{photo.name} looks like a different person than {first.name} (similarity "
                            f"{value:.2f} < {threshold}); use photos of one person only.")
    from facestudio.face.attributes import subject_words

    estimates = [photo.attributes for photo in photos if photo.attributes is not None]
    return IdentityCheck(photos, warnings, subject_words(estimates))


def _inspect_one(analyzer: FaceAnalyzer, path: Path, name: str, index: int | None, min_face_px: int,
                 min_sharpness: float, max_pixels: int) -> PhotoCheck:
    from facestudio.face import load_image
    from facestudio.face.debug import draw_analysis
    from facestudio.face.quality import competing_faces, face_sharpness

    image = load_image(path, name=name, max_pixels=max_pixels)
    faces = analyzer.analyze(image).faces
    check = PhotoCheck(name, path, image.width, image.height, faces, None, [])
    parsings = []
    if not faces:
        check.warnings.append(f"{name}: no face found; use a clear photo with the face visible.")
    else:
        if index is not None and index >= len(faces):
            raise FaceNotFoundError(f"{name} has {len(faces)} face(s); face {index} does not exist "
                                    f"(use 0 to {len(faces) - 1}, 0 is the largest).")
        check.face_index = index or 0
        face = faces[check.face_index]
        rivals = competing_faces(faces)
        if rivals > 1:
            check.warnings.append(f"{name}: {rivals} faces of similar size; face {check.face_index} is used (pick "
                                  "another by its number, or use a photo of the person alone).")
        if face.width < min_face_px:
            check.warnings.append(f"{name}: the face is small ({face.width:.0f} px wide, {min_face_px} px or more "
                                  "gives a better likeness).")
        pixels = np.asarray(image)
        check.sharpness = face_sharpness(pixels, face)
        if check.sharpness < min_sharpness:
            check.warnings.append(f"{name}: the face is blurry (sharpness {check.sharpness:.0f}, below "
                                  f"{min_sharpness:g}).")
        parsing = analyzer.parse(image, face)
        parsings = [parsing]
        check.crop = analyzer.reference_crop(image, face, parsing)
        check.head_mask = (parsing.head_mask() * 255).astype(np.uint8)
        check.embedding = np.asarray(analyzer.embed(image, face), dtype=np.float32)
        if analyzer.attributes is not None:  # the gender/age model, when its pack is on disk: the subject words
            check.attributes = analyzer.attributes.estimate(pixels, face)
    check.overlay = draw_analysis(image, faces, parsings)
    return check


# -- named identities on disk -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """A saved identity: its name, folder and photo files (what `GenerateRequest.faces` takes)."""

    name: str
    slug: str
    folder: Path
    photos: tuple[Path, ...]
    created: str
    subject: str = ""  # words for the person ("a woman, 25-year-old"): the release starts every prompt with them

    def to_dict(self) -> dict:
        return {"name": self.name, "slug": self.slug, "photos": [p.name for p in self.photos],
                "created": self.created, "subject": self.subject}


def identity_slug(name: str) -> str:
    """The folder name of an identity: lower case letters, digits and dashes, from the name the user gave."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequestError("Give the identity a name.")
    if len(name.strip()) > MAX_NAME_LENGTH:
        raise InvalidRequestError(f"Identity names are at most {MAX_NAME_LENGTH} characters; got {len(name.strip())}.")
    slug = slugify(name)
    if not slug:
        raise InvalidRequestError(f"The name {name!r} needs at least one letter or digit.")
    return slug


class IdentityStore:
    """Named identities under `home/identities`; names map to folders only through `identity_slug`. Photos over
    `max_pixels` are refused when saved."""

    def __init__(self, home: Path, max_pixels: int = DEFAULT_MAX_PIXELS):
        self.root = Path(home) / "identities"
        self.max_pixels = max_pixels

    def list(self) -> list[Identity]:
        """Every readable identity, sorted by name; a damaged folder is logged and skipped."""
        found = []
        if self.root.is_dir():
            for folder in sorted(self.root.iterdir()):
                if folder.name.startswith(".") or not (folder / IDENTITY_FILE).is_file():
                    continue
                try:
                    found.append(self._read(folder))
                except (OSError, InvalidRequestError) as err:
                    logger.warning("Skipping the identity in %s: %s", folder.name, err)
        return sorted(found, key=lambda identity: identity.name.lower())

    def damaged(self) -> builtins.list[str]:
        """The folders under `identities/` whose record cannot be read (shown as damaged; `list` skips them)."""
        names = []
        if self.root.is_dir():
            for folder in sorted(self.root.iterdir()):
                if folder.name.startswith(".") or not (folder / IDENTITY_FILE).is_file():
                    continue
                try:
                    self._read(folder)
                except (OSError, InvalidRequestError):
                    names.append(folder.name)
        return names

    def get(self, name: str) -> Identity:
        folder = self.root / identity_slug(name)
        if not (folder / IDENTITY_FILE).is_file():
            known = ", ".join(i.name for i in self.list()) or "none yet"
            raise InvalidRequestError(f"There is no saved identity {name!r} (saved: {known}).")
        return self._read(folder)

    def _read(self, folder: Path) -> Identity:
        """The identity in `folder`, every field type-checked; `InvalidRequestError` naming the folder when its
        record is damaged (any JSON, any types), never another exception."""
        def damaged(why: str) -> InvalidRequestError:
            return InvalidRequestError(f"The saved identity {folder.name} is damaged ({why}); delete it and save it "
                                       "again.")

        try:
            data = json.loads((folder / IDENTITY_FILE).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as err:
            raise damaged(f"{IDENTITY_FILE} is not JSON: {type(err).__name__}") from None
        if not isinstance(data, dict) or data.get("format") != IDENTITY_FORMAT:
            raise damaged(f"{IDENTITY_FILE} is not a FaceStudio identity")
        name, entries, created = data.get("name"), data.get("photos"), data.get("created", "")
        if not isinstance(name, str) or not name.strip():
            raise damaged("no name")
        if not isinstance(entries, list) or not entries:
            raise damaged("no list of photos")
        photos = []
        for entry in entries:
            file = entry.get("file") if isinstance(entry, dict) else None
            if not isinstance(file, str) or not file or "\x00" in file:
                raise damaged("a photo entry has no file name")
            path = folder / Path(file).name  # only files inside the folder
            if not path.is_file():
                raise InvalidRequestError(f"The photo {path.name} of identity {name!r} is missing.")
            photos.append(path)
        subject = data.get("subject")
        return Identity(name, folder.name, folder, tuple(photos), created if isinstance(created, str) else "",
                        " ".join(subject.split())[:MAX_SUBJECT_LENGTH] if isinstance(subject, str) else "")

    def set_subject(self, name: str, subject: str) -> Identity:
        """Change the subject words of a saved identity (free text, at most one line)."""
        identity = self.get(name)
        path = identity.folder / IDENTITY_FILE
        data = json.loads(path.read_text())
        data["subject"] = _subject(subject)
        write_atomic(path, json.dumps(data, indent=2).encode())
        return self._read(identity.folder)

    def save(self, name: str, check: IdentityCheck, overwrite: bool = False, subject: str = "") -> Identity:
        """Keep the usable photos of `check` as identity `name`; `overwrite` replaces one of the same name. Without
        `subject` words, the ones the gender/age model suggested (if any) are kept."""
        from facestudio.face import load_image

        slug = identity_slug(name)
        usable = check.usable
        if not usable:
            raise InvalidRequestError("None of the photos shows a face; there is nothing to save.")
        final = self.root / slug
        if final.exists() and not overwrite:
            raise InvalidRequestError(f"An identity named {name.strip()!r} exists; choose another name or replace it.")
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{slug}.", dir=self.root))
        try:
            entries = []
            for number, photo in enumerate(usable, start=1):
                image = load_image(photo.path, name=photo.name, max_pixels=self.max_pixels)
                if photo.face_index:  # keep the chosen face as the largest one
                    image = _around_face(image, photo.faces[photo.face_index])
                file_name = f"photo-{number:02d}.png"
                image.save(staging / file_name, format="PNG")
                entries.append({"file": file_name, "source": photo.name, "face_index": photo.face_index})
            record = {"format": IDENTITY_FORMAT, "version": 1, "name": name.strip(), "photos": entries,
                      "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                      "subject": _subject(subject or check.suggested_subject)}
            write_atomic(staging / IDENTITY_FILE, json.dumps(record, indent=2).encode())
            if final.exists():
                retired = final.with_name(f".{slug}.old-{time.time_ns()}")
                final.rename(retired)
                staging.rename(final)
                shutil.rmtree(retired, ignore_errors=True)
            else:
                staging.rename(final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return self._read(final)

    def delete(self, name: str) -> None:
        """Remove identity `name`, or a damaged identity folder of that name (so it can be cleaned up)."""
        folder = self.root / identity_slug(name)
        if not (folder / IDENTITY_FILE).is_file():
            self.get(name)  # the clear "no such identity" error
        shutil.rmtree(folder)


def _subject(text: str | None) -> str:
    subject = " ".join(str(text or "").split())
    if len(subject) > MAX_SUBJECT_LENGTH:
        raise InvalidRequestError(f"Subject words are at most {MAX_SUBJECT_LENGTH} characters; got {len(subject)}.",
                                  field="subject")
    return subject


def with_subject(prompt: str, subject: str | None) -> str:
    """The release's prompt order: the person's words first ("a woman, 25-year-old, "), then the prompt."""
    words = " ".join(str(subject or "").split()).strip(" ,")
    return f"{words}, {prompt}" if words else prompt


def _around_face(image: Image.Image, face: Face) -> Image.Image:
    """A window around `face`, clipped to the photo (no padding a detector could take for something)."""
    half = max(face.width, face.height) * CHOSEN_FACE_WINDOW / 2
    x, y = (float(v) for v in face.center)
    box = (max(0, round(x - half)), max(0, round(y - half)), min(image.width, round(x + half)),
           min(image.height, round(y + half)))
    return image.crop(box)
