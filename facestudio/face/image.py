"""Image loading for every entry point: one place that turns a user's file into an upright RGB picture, or refuses it.

Photos from phones are stored sideways with an EXIF orientation tag, come as RGBA/P/CMYK/16-bit, and some files
are not images at all or are crafted to explode when decoded. Every loader in the studio goes through `load_image`,
so coordinates are always in the upright image and every refusal is one sentence naming the file.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

from facestudio.config import DEFAULT_MAX_PIXELS
from facestudio.errors import ImageLoadError

ImageSource = str | os.PathLike | bytes | Image.Image | np.ndarray

#: Photos whose longer side exceeds this are analysed on a downscaled copy; coordinates are mapped back.
DEFAULT_ANALYSIS_MAX_SIDE = 2048


def describe_source(source: ImageSource, name: str | None = None) -> str:
    """The name used in messages: the path as the user gave it, or a short description of in-memory data."""
    if name:
        return name
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, bytes):
        return "<uploaded bytes>"
    if isinstance(source, np.ndarray):
        return "<array>"
    return getattr(source, "filename", None) or "<image>"


def load_image(source: ImageSource, *, name: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open `source` as an upright 8-bit RGB `PIL.Image`, or raise `ImageLoadError` with one clear sentence.

    Args:
        source: a path, the file's bytes, a `PIL.Image` or an `HxW`/`HxWx3`/`HxWx4` uint8 array.
        name: *optional*, how to call the image in messages (defaults to the path).
        max_pixels: *optional*, refuse larger images before decoding (defaults to 64 MP; the fronts pass
            `StudioSettings.max_pixels`, i.e. FACESTUDIO_MAX_PIXELS).
    """
    label = describe_source(source, name)
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, label)
    if isinstance(source, Image.Image):
        _check_size(source.size, label, max_pixels)
        return _to_upright_rgb(source, label)
    if isinstance(source, bytes):
        if not source:
            raise ImageLoadError(f"{label} is empty (0 bytes), not an image.")
        return _open_and_decode(io.BytesIO(source), label, max_pixels)

    path = Path(source)
    if not path.exists():
        raise ImageLoadError(f"{label} does not exist.")
    if path.is_dir():
        raise ImageLoadError(f"{label} is a folder, not an image file.")
    if path.stat().st_size == 0:
        raise ImageLoadError(f"{label} is empty (0 bytes), not an image.")
    try:
        with path.open("rb") as handle:
            return _open_and_decode(handle, label, max_pixels)
    except PermissionError as err:
        raise ImageLoadError(f"{label} cannot be read: permission denied.") from err


def _open_and_decode(handle, label: str, limit: int) -> Image.Image:
    # PIL's own bomb check only warns below 2x its limit; ours refuses from the header, before any decoding.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(handle)
        except UnidentifiedImageError as err:
            raise ImageLoadError(f"{label} is not an image file that can be read (unknown or corrupt format).") from err
        except Image.DecompressionBombError as err:
            raise ImageLoadError(_bomb_message(label)) from err
        except OSError as err:
            raise ImageLoadError(f"{label} could not be read as an image ({err}).") from err
        _check_size(image.size, label, limit)
        # Decode now, while the file is open, with truncated data treated as an error rather than grey pixels.
        previous = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            image.load()
        except Image.DecompressionBombError as err:
            raise ImageLoadError(_bomb_message(label)) from err
        except (OSError, SyntaxError, ValueError, EOFError) as err:
            raise ImageLoadError(f"{label} is truncated or corrupt and cannot be decoded ({err}).") from err
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous
    return _to_upright_rgb(image, label)


def _bomb_message(label: str) -> str:
    limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    return f"{label} claims more than {limit / 1e6:.0f} megapixels; refused as a decompression bomb."


def _check_size(size: tuple[int, int], label: str, limit: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageLoadError(f"{label} has no pixels ({width}x{height}).")
    if width * height > limit:
        raise ImageLoadError(
            f"{label} is {width}x{height} = {width * height / 1e6:.0f} megapixels, over the limit of "
            f"{limit / 1e6:.0f} MP (a decompression bomb or a very large scan); resize it or raise FACESTUDIO_MAX_PIXELS."
        )


def _to_upright_rgb(image: Image.Image, label: str) -> Image.Image:
    # A broken EXIF block must not lose an otherwise good photo.
    with contextlib.suppress(Exception):
        image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _high_depth_to_rgb(image)
    if mode == "CMYK":
        return _cmyk_to_rgb(image)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        # Transparent areas become white, as a viewer shows them; a premultiplied black would read as dark hair.
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as err:
        raise ImageLoadError(f"{label} uses the colour mode {mode!r}, which cannot be converted to RGB.") from err


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit and float greyscale: scale to 8 bits instead of clipping everything above 255 to white."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
        scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
    else:
        scaled = values / 257.0 if values.max(initial=0) > 255 else values
    gray = np.clip(np.nan_to_num(scaled), 0, 255).astype(np.uint8)
    return Image.fromarray(np.stack([gray] * 3, axis=-1), "RGB")


def _cmyk_to_rgb(image: Image.Image) -> Image.Image:
    """CMYK (print JPEGs): use the embedded ICC profile when there is one, else PIL's plain conversion."""
    profile = image.info.get("icc_profile")
    if profile:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            return ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError):
            pass
    return image.convert("RGB")


def _array_to_rgb(array: np.ndarray, label: str) -> Image.Image:
    if array.size == 0:
        raise ImageLoadError(f"{label} has no pixels.")
    if array.dtype != np.uint8:
        raise ImageLoadError(f"{label} must be a uint8 array; got {array.dtype}.")
    if array.ndim == 2:
        return Image.fromarray(array, "L").convert("RGB")
    if array.ndim == 3 and array.shape[2] == 3:
        return Image.fromarray(np.ascontiguousarray(array), "RGB")
    if array.ndim == 3 and array.shape[2] == 4:
        return _to_upright_rgb(Image.fromarray(np.ascontiguousarray(array), "RGBA"), label)
    raise ImageLoadError(f"{label} must be an HxW, HxWx3 or HxWx4 array; got shape {array.shape}.")


@dataclass(frozen=True)
class AnalysisView:
    """A copy of a photo small enough to analyse quickly, and the factor that maps its coordinates back.

    `pixels` is `HxWx3` uint8 RGB; a point `p` in `pixels` is `p / scale` in the original photo.
    """

    pixels: np.ndarray
    scale: float
    original_size: tuple[int, int]

    def to_original(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, dtype=np.float64) / self.scale


def analysis_view(image: Image.Image, max_side: int = DEFAULT_ANALYSIS_MAX_SIDE) -> AnalysisView:
    """Downscale very large photos for analysis (coordinates map back through `AnalysisView.to_original`)."""
    width, height = image.size
    scale = min(1.0, max_side / max(width, height))
    if scale < 1.0:
        resized = image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BILINEAR,
                               reducing_gap=2.0)
        # The rounded size defines the exact factor, so mapped-back coordinates do not drift.
        scale = resized.width / width
        pixels = np.asarray(resized)
    else:
        pixels = np.asarray(image)
    return AnalysisView(pixels=np.ascontiguousarray(pixels), scale=scale, original_size=(width, height))
