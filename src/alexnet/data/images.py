"""Reading any image Pillow can read, safely, into an RGB (or grey) uint8 array.

Handles what real photo folders contain: grayscale, RGBA/LA and palette images with transparency
(composited on white), CMYK, 16-bit and 32-bit integer images (scaled to 8 bits, not clipped),
float images, EXIF orientation, files whose extension lies about their format, and very large
JPEGs (decoded at a reduced scale with ``draft`` when the target is small). Truncated files,
non-images and decompression bombs raise ``ImageError`` with a one-line reason.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset(
    ".jpg .jpeg .png .bmp .gif .tif .tiff .webp .ppm .pgm .pbm .pnm .jfif .jpe .ico .tga .sgi".split()
)

# Pillow refuses images over 2x this many pixels (DecompressionBombError) and warns between 1x
# and 2x. We keep its limit (about 179 megapixels: larger than any camera photo) and make the
# warning silent, so only real bombs are refused.
MAX_PIXELS = 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else None


class ImageError(Exception):
    """An image file that cannot be used; the message is one line naming the reason."""


class NotAnImageError(ImageError):
    """A file that Pillow cannot identify as any image format (an upload gets 415, not 400)."""


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True for a visible file whose extension is an image format's (.DS_Store, notes.txt: False)."""
    name = os.path.basename(path)
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


NOT_REGULAR = "not a regular file (a pipe, a device or a broken link)"


def walk_images(
    folder: str | os.PathLike[str],
    note: Callable[[str, str], None] | None = None,
    identities: dict[tuple[int, int], str] | None = None,
) -> Iterator[str]:
    """The image files below ``folder``, sorted, following symbolic links but walking each folder
    once (a link loop ends); hidden files and folders are left out. Anything that is not a regular
    file (a FIFO would block its reader forever) is skipped and reported to ``note(path, reason)``.
    ``identities``: filled with each yielded file's (device, inode) -> path, from the stat it takes anyway."""
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if not is_image_file(f):
                continue
            path = os.path.join(dirpath, f)
            try:
                fst = os.stat(path)
                regular = stat.S_ISREG(fst.st_mode)
            except OSError:  # a dangling link
                regular = False
            if regular:
                if identities is not None:
                    identities.setdefault((fst.st_dev, fst.st_ino), path)
                yield path
            elif note is not None:
                note(path, NOT_REGULAR)


def _to_8bit(img: Image.Image) -> Image.Image:
    """Integer and float modes ('I;16', 'I', 'F', ...) scaled into 0-255 ('L')."""
    a = np.asarray(img)
    if a.dtype.kind == "f":
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
    else:
        # 16-bit data (the common case, including 'I' images that hold 16-bit PNGs) scale by
        # 65535/255 = 257; anything wider is scaled by its own maximum.
        top = int(a.max()) if a.size else 0
        div = 1 if top <= 255 else 257 if top <= 65535 else top / 255.0
        a = a / div
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


def to_mode(img: Image.Image, channels: int = 3) -> Image.Image:
    """Convert any Pillow image to 'RGB' (channels=3) or 'L' (channels=1) correctly."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        img = _to_8bit(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    want = "RGB" if channels == 3 else "L"
    return img if img.mode == want else img.convert(want)


def load_image(
    path: str | os.PathLike[str], channels: int = 3, min_side: int | None = None, max_pixels: int | None = None
) -> Image.Image:
    """Open, fully decode, apply EXIF orientation and convert to RGB/L.

    ``min_side``: the caller will shrink the image so its shorter side is this; large JPEGs are
    then decoded at the smallest scale (1/2, 1/4, 1/8) that stays at least this big.
    ``max_pixels``: refuse larger images (default ``MAX_PIXELS``).
    Raises ``ImageError`` with a one-line reason for anything unusable.
    """
    path = Path(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO or a device would block the read forever
            raise ImageError("is a directory" if path.is_dir() else "not a regular file (a pipe or a device?): skipped")
        return _decode(path, channels, min_side, max_pixels)
    except FileNotFoundError:
        raise ImageError("no such file") from None
    except PermissionError:
        raise ImageError("permission denied") from None
    except IsADirectoryError:
        raise ImageError("is a directory") from None


def open_upload(data: bytes) -> Image.Image:
    """The bytes of an image file opened: its header read, no pixel decoded (``decoded_pixels``
    sizes it, ``decode_opened`` decodes it, so that an upload is parsed once). Raises
    ``ImageError`` (``NotAnImageError`` for what Pillow cannot identify)."""
    with _image_errors():
        return Image.open(io.BytesIO(data))


def decoded_pixels(img: Image.Image, min_side: int | None = None) -> int:
    """How many pixels ``decode_opened(img, ..., min_side)`` will hold while it decodes, from the
    header alone: width x height, divided by the square of the scale a JPEG is drafted at (as
    ``decode_opened`` drafts it)."""
    w, h = img.width, img.height
    s = min(w, h)
    if min_side and img.format == "JPEG" and s > 2 * min_side:
        scale = next(k for k in (8, 4, 2, 1) if s // k >= min_side)
        return -(-w // scale) * -(-h // scale)
    return w * h


def decode_image(
    data: bytes, channels: int = 3, min_side: int | None = None, max_pixels: int | None = None
) -> Image.Image:
    """``load_image`` for the bytes of an image file (an upload)."""
    return decode_opened(open_upload(data), channels, min_side, max_pixels)


def _decode(source: Path, channels: int, min_side: int | None, max_pixels: int | None) -> Image.Image:
    with _image_errors():  # one error context for the open and the decode: this is every training image's path
        return _decode_opened(Image.open(source), channels, min_side, max_pixels)


def decode_opened(
    img: Image.Image, channels: int = 3, min_side: int | None = None, max_pixels: int | None = None
) -> Image.Image:
    """An opened image (``Image.open``, ``open_upload``) decoded, EXIF-rotated and converted to
    RGB/L; ``min_side`` and ``max_pixels`` as in ``load_image``. Closes ``img``."""
    with _image_errors():
        return _decode_opened(img, channels, min_side, max_pixels)


def _decode_opened(img: Image.Image, channels: int, min_side: int | None, max_pixels: int | None) -> Image.Image:
    limit = max_pixels or MAX_PIXELS
    with img:
        if limit and img.width * img.height > limit:
            raise ImageError(f"{img.width}x{img.height} pixels is over the {limit:,}-pixel limit (decompression bomb?)")
        if min_side and img.format == "JPEG":
            # draft keeps the scale factor that leaves the image at least the requested
            # size; the EXIF rotation below does not change the shorter side.
            s = min(img.width, img.height)
            if s > 2 * min_side:
                img.draft(img.mode, (img.width * min_side // s, img.height * min_side // s))
        img.load()
        return to_mode(ImageOps.exif_transpose(img) or img, channels)


@contextlib.contextmanager
def _image_errors() -> Iterator[None]:
    """Pillow's failures on a file as one-line ``ImageError``s; its decompression-bomb warning
    (between 1x and 2x ``Image.MAX_IMAGE_PIXELS``) silent."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except (ImageError, FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except UnidentifiedImageError:
        raise NotAnImageError("not an image (Pillow cannot identify it)") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"refused as a decompression bomb ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # truncated or corrupt data
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageError(f"unreadable image ({msg})") from None
    except Exception as e:  # noqa: BLE001 - any other failure of any Pillow plugin on a hostile file
        # (a corrupt AVIF raises RuntimeError, a TIFF OverflowError, a SPIDER file AttributeError):
        # one unusable file, never a crash of a long run
        msg = str(e).splitlines()[0][:160] if str(e) else ""
        raise ImageError(f"unreadable image ({type(e).__name__}{': ' + msg if msg else ''})") from None


RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}  # config.INTERPOLATIONS as Pillow's filters


def resize_center_square(img: Image.Image, size: int, interpolation: str = "bilinear") -> Image.Image:
    """The paper's §2 preprocessing: shorter side to ``size`` (antialiased bilinear, or
    ``interpolation``), central square.

    Done as one resize of the central square region (``box``), not a resize of the whole image
    followed by a crop: the memory is that of the output whatever the shape (a 1x10000 strip once
    cost 3 GB resized whole)."""
    w, h = img.size
    if (w, h) != (size, size):
        side = min(w, h)
        left, top = (w - side) / 2, (h - side) / 2
        if side == size:
            return img.crop((int(left), int(top), int(left) + size, int(top) + size))
        img = img.resize(
            (size, size),
            RESAMPLE[interpolation],
            box=(left, top, left + side, top + side),
            reducing_gap=3.0 if side > 4 * size else None,
        )
    return img


def load_square(path: str | os.PathLike[str], channels: int, size: int) -> Image.Image:
    """An image file as a model's input square: decoded at the smallest scale that keeps it at least
    ``size`` (``load_image``), shrunk at once to ``size`` x ``size`` (``resize_center_square``), so
    that many of them in a batch hold small squares, never full decodes."""
    return resize_center_square(load_image(path, channels, min_side=size), size)


def image_to_array(img: Image.Image) -> np.ndarray:
    """A Pillow 'RGB' or 'L' image as a (C, H, W) uint8 array."""
    a = np.array(img, dtype=np.uint8)  # a writable copy: torch.from_numpy warns on read-only arrays
    return a[None] if a.ndim == 2 else np.ascontiguousarray(a.transpose(2, 0, 1))
