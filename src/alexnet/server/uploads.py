"""A classify request's images: read from a multipart body (``file`` fields) or a raw image body,
counted against the request's pixel budget from their headers before any decoding, then decoded one
at a time within the budget of all requests and shrunk to the model's scale."""
# no ``from __future__ import annotations``: kept like the other modules FastAPI's handlers use

from typing import Any

from ..data.images import ImageError, NotAnImageError, decode_opened, decoded_pixels, open_upload, resize_center_square
from .batching import PixelBudget
from .errors import ApiError
from .metrics import Metrics
from .options import ServeOptions


async def read_files(request: Any, opts: ServeOptions, filename: str) -> list[tuple[str, bytes]]:
    """(name, bytes) of every uploaded image, or an ApiError (413, 415, 422, 400) naming what is wrong."""
    from starlette.requests import ClientDisconnect

    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        files = await _multipart(request, opts)
    elif ctype.startswith("image/") or ctype in ("application/octet-stream", ""):
        try:
            files = [(filename, await request.body())]
        except ClientDisconnect:
            raise ApiError(400, "the client disconnected during the upload") from None
        if not files[0][1]:
            raise ApiError(422, "malformed request: an empty body; send an image (or multipart 'file' fields)")
    else:
        raise ApiError(415, f"unsupported content type {ctype!r}: send an image body or multipart/form-data")
    if len(files) > opts.max_files:
        raise ApiError(422, f"malformed request: too many files ({len(files)}; at most {opts.max_files}; --max-files)")
    return files


async def _multipart(request: Any, opts: ServeOptions) -> list[tuple[str, bytes]]:
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.formparsers import MultiPartException
    from starlette.requests import ClientDisconnect

    try:
        form = await request.form(max_files=opts.max_files, max_fields=opts.max_files + 16)
    except ClientDisconnect:  # the client went away mid-upload: nothing to answer, no traceback
        raise ApiError(400, "the client disconnected during the upload") from None
    except (MultiPartException, StarletteHTTPException) as e:  # starlette wraps the first in the second
        msg = str(getattr(e, "message", None) or getattr(e, "detail", None) or e)
        if "Too many files" in msg:
            raise ApiError(422, f"malformed request: too many files (at most {opts.max_files}; --max-files)") from None
        raise ApiError(422, f"malformed request: {msg}") from None
    files = []
    try:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key != "file":
                    raise ApiError(422, f"malformed request: upload field {key!r}; send images as 'file'")
                files.append((value.filename or "file", await value.read()))
    finally:
        await form.close()
    if not files:
        raise ApiError(422, "malformed request: no 'file' field in the multipart body")
    return files


def measure(files: list[tuple[str, bytes]], clf: Any, opts: ServeOptions) -> tuple[list[Any], list[int]]:
    """Each upload's header read once; the decoded pixels from it. Over the request's budget: 413 before
    any decoding (an image over --max-pixels is refused on its own, 400, and never decoded: it counts
    0, as does one whose header is unreadable, reported when its turn comes)."""
    opened: list[Any] = []
    for _, data in files:
        try:
            opened.append(open_upload(data))
        except ImageError as e:
            opened.append(e)
    sizes = [
        0 if isinstance(img, ImageError) or (n := decoded_pixels(img, clf.image_size)) > opts.max_pixels else n
        for img in opened
    ]
    if sum(sizes) > opts.max_request_pixels:
        raise ApiError(
            413,
            f"{sum(sizes):,} decoded pixels in this request's {len(files)} image(s), over the "
            f"{opts.max_request_pixels:,}-pixel limit (--max-request-pixels)",
        )
    return opened, sizes


def decode(name: str, img: Any, clf: Any, opts: ServeOptions, metrics: Metrics) -> Any:
    """One opened upload decoded and shrunk to the model's scale at once (a request holds small squares,
    not full decodes); an image that is not one is 415, a corrupt one 400, named."""
    try:
        if isinstance(img, ImageError):
            raise img
        return resize_center_square(
            decode_opened(img, 3 if clf.channels == 3 else 1, clf.image_size, opts.max_pixels), clf.image_size
        )
    except ImageError as e:
        metrics.image_error()
        raise ApiError(415 if isinstance(e, NotAnImageError) else 400, f"{name}: {e}", name) from None


async def decode_all(
    files: list[tuple[str, bytes]], clf: Any, opts: ServeOptions, budget: PixelBudget, metrics: Metrics
) -> list[Any]:
    """Every image of a request, decoded on a thread, one at a time, each within the budget of all requests."""
    from starlette.concurrency import run_in_threadpool

    opened, sizes = measure(files, clf, opts)
    images = []
    for (name, _), img, n in zip(files, opened, sizes):
        await budget.acquire(n)
        try:
            images.append(await run_in_threadpool(decode, name, img, clf, opts, metrics))
        finally:
            await budget.release(n)
    return images
