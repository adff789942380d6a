"""Bad and awkward inputs, generated in code."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def png_with_header_size(width: int, height: int) -> bytes:
    """A tiny PNG file whose header claims `width x height` pixels (a decompression bomb's signature)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def with_exif_orientation(upright: Image.Image, orientation: int = 6) -> bytes:
    """JPEG bytes stored sideways with an EXIF tag telling viewers how to turn it upright.

    Orientation 6 = "rotate 90° clockwise to display", so the stored pixels are the upright photo turned 90°
    counter-clockwise.
    """
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes())


def noise(size: tuple[int, int] = (640, 480), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
