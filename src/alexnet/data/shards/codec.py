"""JPEG encoding (Pillow, at ``prepare``) and decoding (simplejpeg where installed, else Pillow) for the
shard format, and the ``shorter`` shape's resize.

Encoding always uses Pillow, so that a rerun of ``prepare`` writes the same bytes whatever is installed.
Decoding prefers simplejpeg (libjpeg-turbo without Pillow's image objects: 1.5x Pillow's rate on one
core, per the issue's measurement on photographs); both use libjpeg-turbo's accurate integer DCT and
smooth chroma upsampling, and give the same pixels (``tests/test_shards.py`` checks it where both are
installed), so a run resumed with the other one installed sees the same images."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ..images import ImageError

try:  # optional: the `jpeg` extra
    import simplejpeg
except ImportError:  # pragma: no cover - exercised where it is absent
    simplejpeg = None

SUBSAMPLING = 2  # Pillow's 4:2:0, the common photograph form (and what the sizes were measured at)


def decoder_name() -> str:
    return "simplejpeg" if simplejpeg is not None else "pillow"


def encode(image: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality, subsampling=SUBSAMPLING, optimize=False)
    return buf.getvalue()


def _unreadable(e: Exception) -> ImageError:
    """Any decoder's complaint about the bytes, as the one line a corrupt member gets."""
    return ImageError(f"not a readable JPEG ({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})")


def header_size(data: bytes) -> tuple[int, int]:
    """(height, width) from the JPEG's header, without decoding it."""
    try:
        if simplejpeg is not None:
            h, w, _, _ = simplejpeg.decode_jpeg_header(data)
            return int(h), int(w)
        with Image.open(io.BytesIO(data)) as im:
            if im.format != "JPEG":
                raise ImageError(f"not a JPEG ({im.format})")
            return im.height, im.width
    except ImageError:
        raise
    except Exception as e:  # any decoder's complaint about the bytes: a corrupt member
        raise _unreadable(e) from None


def check_header(data: bytes, expect: tuple[int, int]) -> None:
    """Refuse JPEG ``data`` whose header is not ``expect`` (height, width), the index's size: a member
    that would decode to 1x1 or 60000x10 is refused before any pixel is decoded."""
    hw = header_size(data)
    if hw != tuple(expect):
        raise ImageError(f"decodes to {hw[1]}x{hw[0]}, but the index says {expect[1]}x{expect[0]}")


def decode(data: bytes, expect: tuple[int, int]) -> np.ndarray:
    """The JPEG ``data`` as (H, W, 3) uint8 RGB, after ``check_header``."""
    check_header(data, expect)
    try:
        if simplejpeg is not None:
            return simplejpeg.decode_jpeg(data, colorspace="RGB")
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as e:
        raise _unreadable(e) from None


def decode_into(data: bytes, expect: tuple[int, int], out: np.ndarray) -> None:
    """``decode``, written into ``out`` ((H, W, 3) uint8, the index's size, contiguous): simplejpeg
    decodes straight into it (no array of its own to allocate and fault in); Pillow's pixels are copied."""
    check_header(data, expect)
    try:
        if simplejpeg is not None:
            simplejpeg.decode_jpeg(data, colorspace="RGB", buffer=out)
            return
        with Image.open(io.BytesIO(data)) as im:
            out[...] = np.asarray(im.convert("RGB"))
    except Exception as e:
        raise _unreadable(e) from None


def resize_shorter(image: Image.Image, size: int, max_aspect: float) -> Image.Image:
    """The ``shorter`` shape: the shorter side resized to ``size`` (antialiased bilinear), the aspect
    kept, the longer side at most ``max_aspect`` times the shorter (a panorama is cut to that, centred).
    One resize of the kept region, as ``resize_center_square`` does."""
    w, h = image.size
    short = min(w, h)
    long_out = min(round(max(w, h) * size / short), int(max_aspect * size))
    long_in = min(max(w, h), long_out * short / size)  # the source span the output's longer side covers
    if w <= h:
        out, box = (size, long_out), (0.0, (h - long_in) / 2, float(w), (h + long_in) / 2)
    else:
        out, box = (long_out, size), ((w - long_in) / 2, 0.0, (w + long_in) / 2, float(h))
    if image.size == out:
        return image
    return image.resize(out, Image.Resampling.BILINEAR, box=box, reducing_gap=3.0 if short > 4 * size else None)


def centre_square(a: np.ndarray, size: int) -> np.ndarray:
    """The central size x size of an (H, W, C) array whose shorter side is ``size``."""
    h, w = a.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return a[top : top + size, left : left + size]
