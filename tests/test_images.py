"""Reading odd images: every mode Pillow opens, EXIF orientation, large photos, bad files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexnet.data.images import ImageError, is_image_file, load_image, resize_center_square


def odd_images(d: Path) -> dict[str, Path]:
    """One file of each kind a photo folder can hold; returns {kind: path}."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
    files: dict[str, Path] = {}

    def save(kind: str, img: Image.Image, name: str, **kw: object) -> None:
        files[kind] = d / name
        img.save(files[kind], **kw)

    save("grayscale", rgb.convert("L"), "grey.png")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, 60, dtype=np.uint8), (40, 1))))
    save("rgba", rgba, "rgba.png")
    pal = rgb.convert("P", palette=Image.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    save("palette", pal, "palette.png", transparency=0)
    save("16bit", Image.fromarray(np.full((40, 60), 32768, dtype=np.uint16)), "sixteen.png")
    save("cmyk", rgb.convert("CMYK"), "cmyk.jpg", quality=95)
    save("png_named_jpg", rgb, "actually_png.jpg", format="PNG")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    save("exif_rotated", Image.new("RGB", (60, 40), (200, 10, 10)), "rotated.jpg", exif=exif.tobytes())
    save("large", Image.new("RGB", (6000, 4000), (10, 120, 200)), "large.jpg", quality=80)
    save("rgb_jpeg", rgb, "plain photo é.jpeg")
    return files


def bad_images(d: Path) -> dict[str, Path]:
    d.mkdir(parents=True, exist_ok=True)
    files = {
        "text": d / "notes_named.jpg",
        "truncated": d / "truncated.jpg",
        "empty": d / "empty.png",
        "bomb": d / "bomb.png",
    }
    files["text"].write_text("this is not an image\n")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(buf, "JPEG")
    files["truncated"].write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    files["empty"].write_bytes(b"")
    Image.new("1", (14000, 14000)).save(files["bomb"])  # 196 megapixels, a few KB on disk
    return files


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return odd_images(tmp_path_factory.mktemp("odd"))


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return bad_images(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize(
    "kind", ["grayscale", "rgba", "palette", "16bit", "cmyk", "png_named_jpg", "exif_rotated", "large", "rgb_jpeg"]
)
def test_every_odd_image_loads_as_rgb(odd: dict[str, Path], kind: str) -> None:
    img = load_image(odd[kind])
    assert img.mode == "RGB"
    assert load_image(odd[kind], channels=1).mode == "L"


def test_16bit_is_scaled_not_clipped(odd: dict[str, Path]) -> None:
    a = np.asarray(load_image(odd["16bit"]))
    assert np.all(np.abs(a.astype(int) - 128) <= 1)  # 32768 / 257 = 127.5, not 255


def test_transparent_pixels_become_white(odd: dict[str, Path]) -> None:
    a = np.asarray(load_image(odd["rgba"]))
    assert np.all(a[:, 0] == 255)  # alpha 0 in the first column


def test_exif_orientation_is_applied(odd: dict[str, Path]) -> None:
    assert load_image(odd["exif_rotated"]).size == (40, 60)  # stored 60x40, displayed 40x60


def test_large_jpeg_is_decoded_at_reduced_scale(odd: dict[str, Path]) -> None:
    img = load_image(odd["large"], min_side=256)
    assert 256 <= min(img.size) < 1000
    assert resize_center_square(img, 256).size == (256, 256)
    assert load_image(odd["large"]).size == (6000, 4000)


@pytest.mark.parametrize(
    "kind,reason",
    [("text", "not an image"), ("truncated", "unreadable"), ("empty", "not an image"), ("bomb", "decompression bomb")],
)
def test_bad_files_raise_one_line_errors(bad: dict[str, Path], kind: str, reason: str) -> None:
    with pytest.raises(ImageError, match=reason) as e:
        load_image(bad[kind])
    assert "\n" not in str(e.value)


def test_missing_file() -> None:
    with pytest.raises(ImageError, match="no such file"):
        load_image("/nonexistent/x.jpg")


def test_resize_center_square_takes_the_central_patch() -> None:
    a = np.zeros((100, 300, 3), np.uint8)
    a[:, 100:200] = 255  # the central 100x100 square is white
    out = resize_center_square(Image.fromarray(a), 50)
    assert out.size == (50, 50) and np.asarray(out)[:, 1:-1].min() >= 250  # edges blend with the filter


def test_stray_files_are_not_images() -> None:
    assert not is_image_file(".DS_Store") and not is_image_file("notes.txt") and not is_image_file("._x.jpg")
    assert is_image_file("n01440764_10026.JPEG") and is_image_file("a b.png")
