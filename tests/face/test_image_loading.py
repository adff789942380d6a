"""`load_image`: every awkward or hostile file either becomes an upright RGB picture or one clear error."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from facestudio.errors import ImageLoadError
from facestudio.face.image import analysis_view, load_image
from tests.face.images import encode, noise, png_with_header_size, with_exif_orientation


def write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "data", "phrase"),
    [
        ("empty.jpg", b"", "empty"),
        ("text.jpg", b"this is a text file with a .jpg name\n" * 20, "not an image"),
        ("html.png", b"<html><body>hello</body></html>", "not an image"),
    ],
)
def test_non_images_are_refused_with_the_file_name(tmp_path, name, data, phrase):
    path = write(tmp_path, name, data)
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    message = str(info.value)
    assert str(path) in message
    assert phrase in message
    assert "\n" not in message


def test_truncated_jpeg_is_refused(tmp_path, faces_dir):
    data = (faces_dir / "obama.jpg").read_bytes()
    path = write(tmp_path, "cut.jpg", data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="truncated or corrupt"):
        load_image(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageLoadError, match="does not exist"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageLoadError, match="is a folder"):
        load_image(tmp_path)


@pytest.mark.parametrize("side", [10_000, 60_000])  # 100 MP: over our limit; 3.6 GP: over PIL's too
def test_decompression_bomb_is_refused_before_decoding(tmp_path, side):
    path = write(tmp_path, "bomb.png", png_with_header_size(side, side))
    started = time.perf_counter()
    with pytest.raises(ImageLoadError, match="megapixels") as info:
        load_image(path)
    assert time.perf_counter() - started < 2.0  # refused from the header, not after allocating 3.6 GP
    assert "bomb.png" in str(info.value)


def test_pixel_limit_is_configurable(tmp_path):
    path = write(tmp_path, "big.png", encode(Image.new("RGB", (400, 300))))
    assert load_image(path).size == (400, 300)
    with pytest.raises(ImageLoadError, match="over the limit"):
        load_image(path, max_pixels=100_000)
    with pytest.raises(ImageLoadError, match="over the limit"):
        load_image(Image.new("RGB", (400, 300)), max_pixels=100_000)  # in-memory images are held to it too
    assert load_image(path, max_pixels=400 * 300).size == (400, 300)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F", "1"])
def test_every_colour_mode_becomes_rgb(tmp_path, mode):
    base = noise((64, 48))
    if mode == "I;16":
        image = Image.fromarray((np.asarray(base.convert("L"), dtype=np.uint16) * 257).astype("<u2"))
    else:
        image = base.convert(mode)
    fmt = "TIFF" if mode in ("CMYK", "I", "F") else "PNG"
    path = write(tmp_path, f"img.{fmt.lower()}", encode(image, fmt))
    loaded = load_image(path)
    assert loaded.mode == "RGB"
    assert loaded.size == (64, 48)
    if mode == "I;16":  # 16-bit is scaled down, not clipped to white
        expected = np.asarray(base.convert("L"))
        assert np.abs(np.asarray(loaded)[..., 0].astype(int) - expected).max() <= 1


def test_transparent_pixels_become_white(tmp_path):
    rgba = Image.new("RGBA", (8, 8), (10, 20, 30, 0))
    loaded = load_image(write(tmp_path, "clear.png", encode(rgba)))
    assert np.asarray(loaded).min() == 255


def test_exif_orientation_is_applied(tmp_path):
    upright = Image.new("RGB", (120, 80), "white")
    upright.paste((255, 0, 0), (0, 0, 30, 20))  # red block in the upright top-left corner
    loaded = load_image(write(tmp_path, "phone.jpg", with_exif_orientation(upright)))
    assert loaded.size == (120, 80)
    top_left = np.asarray(loaded)[5:15, 5:25].mean(axis=(0, 1))
    assert top_left[0] > 200 and top_left[1] < 60


def test_one_pixel_and_arrays_and_bytes(tmp_path):
    assert load_image(write(tmp_path, "dot.png", encode(Image.new("RGB", (1, 1))))).size == (1, 1)
    assert load_image(np.zeros((5, 7), np.uint8)).size == (7, 5)
    assert load_image(encode(noise((9, 4)))).size == (9, 4)
    with pytest.raises(ImageLoadError, match="uint8"):
        load_image(np.zeros((5, 5, 3), np.float32))


def test_analysis_view_maps_coordinates_back():
    image = noise((5000, 2500))
    view = analysis_view(image, max_side=2048)
    assert max(view.pixels.shape[:2]) == 2048
    assert np.allclose(view.to_original(np.array([[2048, 1024]])), [[5000, 2500]], atol=1.5)
    small = analysis_view(noise((300, 200)), max_side=2048)
    assert small.scale == 1.0 and small.pixels.shape == (200, 300, 3)
