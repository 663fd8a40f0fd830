"""Batch-level image transforms on uint8 tensors: the paper's crops and flips, centre crops,
padding, channel conversion and normalisation.

Whole (N, C, H, W) uint8 batches are transformed at once, on whatever device they are on (after
the transfer to a GPU, in the training loop), which is how airbench/hlb-CIFAR10 keep augmentation
off the critical path. ``EvalTransform`` is also stored in every checkpoint so that ``predict``
prepares a photo exactly as evaluation prepared the validation images.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

# ImageNet's per-channel mean and standard deviation in 0-255 units (torchvision's weights use them).
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)

# ITU-R BT.601 luma, as Pillow's convert("L").
_LUMA = (0.299, 0.587, 0.114)


def _tracing() -> bool:
    """Inside torch.compile / torch.export tracing: tensors made there are the tracer's (fake), and
    must not be kept for later real calls."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


@functools.lru_cache(maxsize=256)
def _cached_constant(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, device=device)


def device_constant(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """A small float32 constant (a per-channel mean, std, luma weights) on ``device``, made once: built
    from Python numbers every step it would be a blocking host-to-device copy on a GPU. (Under a
    tracer it is made fresh: a cached tracer's tensor would poison every real call after it.)"""
    if _tracing():
        return torch.tensor(values, dtype=torch.float32, device=device)
    return _cached_constant(values, device)


def on_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device``; no call at all when it is already there (the step stays free of copies)."""
    return t if t.device == device else t.to(device)


@dataclass
class EvalTransform:
    """How an image becomes a network input at test time.

    Shorter side resized to ``image_size`` and the central square kept (done when the image is
    decoded), minus ``mean_image`` if there is one (the paper's per-pixel mean, §2), then the
    central ``crop_size`` square, then ``pad`` pixels of zeros on every side (LeNet-5's 28 -> 32),
    then ``channels`` (1 or 3), then ``(x - mean) / std`` with mean and std in 0-255 units per channel.
    ``interpolation`` is how images are resized to ``image_size`` (``config.INTERPOLATIONS``; antialiased but
    for nearest).
    """

    image_size: int
    crop_size: int
    pad: int = 0
    channels: int = 3
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    mean_image: torch.Tensor | None = None  # (C, image_size, image_size) float32, 0-255
    interpolation: str = "bilinear"

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)  # the mean image stays a tensor: checkpoints store it as one
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    def subtract_mean_image(self, x: torch.Tensor) -> torch.Tensor:
        """Stored images (N, C, image_size, image_size) minus the per-pixel mean, as float; unchanged without one."""
        mean = self.mean_image_on(x.device)
        return x if mean is None else x.float() - mean

    def mean_image_on(self, device: torch.device) -> torch.Tensor | None:
        """The mean image (C, image_size, image_size) on ``device``, copied there once (kept beside the
        transform, not in its fields); None without one."""
        if self.mean_image is None:
            return None
        if _tracing():
            return on_device(self.mean_image, device)
        cache = self.__dict__.setdefault("_mean_image_on", {})
        if device not in cache:
            cache[device] = on_device(self.mean_image, device)
        return cache[device]

    def place(self, device: torch.device) -> EvalTransform:
        """Put the transform's constants (mean, std, the mean image) on ``device`` now, before the
        steps that use them; returns self."""
        device = torch.empty(0, device=device).device  # "cuda" -> "cuda:0": the key batches will use
        device_constant(tuple(self.mean), device)
        device_constant(tuple(self.std), device)
        if self.mean_image is not None:
            self.subtract_mean_image(torch.zeros(1, *self.mean_image.shape, device=device))
        return self

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> EvalTransform:
        return cls(**{**d, "mean": tuple(d["mean"]), "std": tuple(d["std"])})  # type: ignore[arg-type]

    @property
    def input_size(self) -> int:
        return self.crop_size + 2 * self.pad

    def resized(
        self, resize_size: int | None = None, crop_size: int | None = None, interpolation: str | None = None
    ) -> EvalTransform:
        """The same transform at another resize (shorter side, then the central square) and centre crop,
        torchvision's ``--val-resize-size`` / ``--val-crop-size`` (the mean image resized with it)."""
        size, crop = resize_size or self.image_size, crop_size or self.crop_size
        if crop > size:
            raise ValueError(f"a crop of {crop} is larger than the {size}x{size} resized image")
        mean_image = self.mean_image if self.mean_image is None else resize_mean_image(self.mean_image, size)
        return replace(
            self,
            image_size=size,
            crop_size=crop,
            mean_image=mean_image,
            interpolation=interpolation or self.interpolation,
        )


def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Grey to RGB by repetition, RGB to grey by BT.601 luma (uint8 or float)."""
    c = x.shape[1]
    if c == channels:
        return x
    if c == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1)
    if c == 3 and channels == 1:
        w = device_constant(_LUMA, x.device).view(1, 3, 1, 1)
        y = (x.float() * w).sum(1, keepdim=True)
        return y.round().clamp(0, 255).to(torch.uint8) if x.dtype == torch.uint8 else y
    raise ValueError(f"cannot convert {c}-channel images to {channels} channels")


def resize_batch(x: torch.Tensor, size: int, interpolation: str = "bilinear") -> torch.Tensor:
    """Resize a square uint8 batch to size x size (antialiased bilinear, or ``interpolation``); a no-op
    at that size."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    if interpolation == "nearest":
        y = F.interpolate(x.float(), size=(size, size), mode="nearest-exact")
    else:
        y = F.interpolate(x.float(), size=(size, size), mode=interpolation, antialias=True, align_corners=False)
    return y.round().clamp(0, 255).to(torch.uint8)


def resize_mean_image(mean_image: torch.Tensor, size: int) -> torch.Tensor:
    """A (C, S, S) float mean image at ``size`` (antialiased bilinear); itself at its own size."""
    if mean_image.shape[-1] == size:
        return mean_image
    return F.interpolate(mean_image[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    if size > min(h, w):
        raise ValueError(f"crop {size} is larger than the {h}x{w} images")
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


def _draw(
    n: int, high_y: int, high_x: int, generator: torch.Generator | None, device: torch.device, flip: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Crop offsets and flip decisions for n images, drawn in a fixed order so that the CPU and GPU
    paths (and a resumed run) see the same numbers."""
    gen_device = generator.device if generator is not None else device
    oy = on_device(torch.randint(0, high_y, (n,), generator=generator, device=gen_device), device)
    ox = on_device(torch.randint(0, high_x, (n,), generator=generator, device=gen_device), device)
    fl = on_device(torch.rand(n, generator=generator, device=gen_device) < 0.5, device) if flip else None
    return oy, ox, fl


def random_crop_minus_mean(
    x: torch.Tensor,
    mean: torch.Tensor,
    size: int,
    translate: int = 0,
    generator: torch.Generator | None = None,
    flip: bool = False,
) -> torch.Tensor:
    """``random_crop(x.float() - mean, ...)``, bit for bit, cropping the uint8 images and the mean image
    (C, H, W) at the same offsets first: the subtraction and its float batch are the crop's size, not
    the stored image's (224x224 of 256x256: 77% of the work and memory). The draws are ``random_crop``'s."""
    if translate:
        x = F.pad(x, (translate,) * 4)
        mean = F.pad(mean, (translate,) * 4)  # the padding is 0 - 0, as padding the difference gives
    n, c, h, w = x.shape
    if size > min(h, w):
        raise ValueError(f"crop {size} is larger than the {h}x{w} images")
    oy, ox, fl = _draw(n, h - size + 1, w - size + 1, generator, x.device, flip)
    crop = _crop_loop if x.device.type == "cpu" else _crop_gather
    return crop(x, size, oy, ox, fl).float() - crop(mean.expand(n, c, h, w), size, oy, ox, fl)


def random_crop(
    x: torch.Tensor, size: int, translate: int = 0, generator: torch.Generator | None = None, flip: bool = False
) -> torch.Tensor:
    """One random size x size crop per image of an (N, C, H, W) batch, mirrored left-right with
    probability 1/2 when ``flip``.

    ``translate`` zero-pads every side first (the CIFAR-style "pad and crop" shift); with
    translate=0 and 256 -> 224 this is the paper's random 224x224 patches (§4.1). The result is
    channels-last in memory (an NHWC buffer seen as NCHW), the layout the convolutions want.
    """
    if translate:
        x = F.pad(x, (translate,) * 4)
    n, c, h, w = x.shape
    if size > min(h, w):
        raise ValueError(f"crop {size} is larger than the {h}x{w} images")
    oy, ox, fl = _draw(n, h - size + 1, w - size + 1, generator, x.device, flip)
    return (_crop_loop if x.device.type == "cpu" else _crop_gather)(x, size, oy, ox, fl)


def _crop_loop(x: torch.Tensor, size: int, oy: torch.Tensor, ox: torch.Tensor, fl: torch.Tensor | None) -> torch.Tensor:
    """CPU: a slice-and-copy per image, 15x faster here than one advanced-indexing gather over the
    batch (5 ms vs 85 ms for 128 crops of 224 from 256, measured on the 2-core dev machine)."""
    n, c = x.shape[:2]
    src = x.permute(0, 2, 3, 1)  # N, H, W, C view
    out = torch.empty(n, size, size, c, dtype=x.dtype)
    oys, oxs = oy.tolist(), ox.tolist()
    fls = fl.tolist() if fl is not None else [False] * n
    for i in range(n):
        v = src[i, oys[i] : oys[i] + size, oxs[i] : oxs[i] + size]
        out[i] = v.flip(1) if fls[i] else v
    return out.permute(0, 3, 1, 2)


def _crop_gather(
    x: torch.Tensor, size: int, oy: torch.Tensor, ox: torch.Tensor, fl: torch.Tensor | None
) -> torch.Tensor:
    """Accelerators: one gather for the whole batch (no per-image launches)."""
    n = x.shape[0]
    src = x.permute(0, 2, 3, 1)  # N, H, W, C view
    ar = torch.arange(size, device=x.device)
    rows = (oy[:, None] + ar)[:, :, None]  # N, size, 1
    cols = (ox[:, None] + ar)[:, None, :]  # N, 1, size
    if fl is not None:  # mirrored crops read their columns right to left
        cols = torch.where(fl[:, None, None], cols.flip(-1), cols)
    out = src[torch.arange(n, device=x.device)[:, None, None], rows, cols]  # N, size, size, C
    return out.permute(0, 3, 1, 2)


RRC_TRIES = 10  # torchvision's: draws per image before the centre fallback


def rrc_boxes(
    heights: torch.Tensor,
    widths: torch.Tensor,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """RandomResizedCrop's boxes for n images of the given sizes, as (n, 4) int64 ``[top, left, h, w]``.

    The distribution of ``torchvision.transforms.v2.RandomResizedCrop.get_params``, drawn for a whole
    batch at once: up to ten tries per image of an area fraction uniform in ``scale`` and an aspect
    ratio (w / h) log-uniform in ``ratio``; the first whose box fits is kept, its corner uniform over
    the positions; an image with no fitting try gets the whole image, cut to the nearest ratio in
    range, centred.
    The draws come in a fixed order (the tries' areas, their ratios, then the corners), so a given
    generator state gives the same boxes on every machine."""
    n = len(heights)
    h_img, w_img = heights.double(), widths.double()
    u = torch.rand(n, 2 * RRC_TRIES + 2, generator=generator, dtype=torch.float64)
    area = (h_img * w_img)[:, None] * (scale[0] + (scale[1] - scale[0]) * u[:, :RRC_TRIES])
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lo + (hi - lo) * u[:, RRC_TRIES : 2 * RRC_TRIES])
    w = torch.round(torch.sqrt(area * aspect))  # round half to even, as Python's round()
    h = torch.round(torch.sqrt(area / aspect))
    fits = (w > 0) & (w <= w_img[:, None]) & (h > 0) & (h <= h_img[:, None])
    first = fits.to(torch.uint8).argmax(1)  # the first try that fits
    found = fits.any(1)
    w = w.gather(1, first[:, None])[:, 0]
    h = h.gather(1, first[:, None])[:, 0]
    top = torch.floor(u[:, -2] * (h_img - h + 1))
    left = torch.floor(u[:, -1] * (w_img - w + 1))
    # the fallback: the whole image, cut to the nearest ratio in range, centred
    in_ratio = w_img / h_img
    fw = torch.where(in_ratio > ratio[1], torch.round(h_img * ratio[1]), w_img)
    fh = torch.where(in_ratio < ratio[0], torch.round(w_img / ratio[0]), h_img)
    fw, fh = fw.clamp(1, None).minimum(w_img), fh.clamp(1, None).minimum(h_img)
    w, h = torch.where(found, w, fw), torch.where(found, h, fh)
    top = torch.where(found, top, torch.div(h_img - h, 2, rounding_mode="floor"))
    left = torch.where(found, left, torch.div(w_img - w, 2, rounding_mode="floor"))
    return torch.stack([top, left, h, w], 1).long()


def resized_crop_batch(x: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Each image's box (``rrc_boxes``' ``[top, left, h, w]``) of a uint8 (N, C, H, W) batch, resized to
    size x size: uint8, channels-last in memory.

    On the CPU, per image, torch's antialiased bilinear resize of uint8 (torchvision's ``resized_crop``
    of a tensor, pixel for pixel; 6x faster than resizing float copies, measured: 29 vs 170 ms for 128
    boxes of 72-256 pixels at 224 on one core). On an accelerator, one bilinear resampling of the whole
    batch with grid_sample (no per-image launches), its coordinates clamped into each box as
    interpolate clamps them, so a box is never blended with the pixels around it: the same pixels as
    the CPU for boxes up to the output's size, and without the antialiasing of boxes larger than it."""
    n, c = x.shape[:2]
    if x.device.type == "cpu":
        out = torch.empty(n, size, size, c, dtype=torch.uint8)
        for i, (top, left, h, w) in enumerate(boxes.tolist()):
            patch = x[i : i + 1, :, top : top + h, left : left + w]
            y = F.interpolate(patch, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            out[i] = y[0].permute(1, 2, 0)
        return out.permute(0, 3, 1, 2)
    return _resized_crop_grid(x, boxes, size)


def _resized_crop_grid(x: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """``resized_crop_batch`` on accelerators (any device; tested on the CPU against the per-image path)."""
    n = x.shape[0]
    b = on_device(boxes, x.device).float()
    top, left, h, w = b.unbind(1)
    H, W = x.shape[-2:]
    j = torch.arange(size, device=x.device, dtype=torch.float32) + 0.5
    sx = left[:, None] + (j[None] * w[:, None] / size - 0.5).clamp(min=0).minimum(w[:, None] - 1)  # N, size
    sy = top[:, None] + (j[None] * h[:, None] / size - 0.5).clamp(min=0).minimum(h[:, None] - 1)
    gx = (2 * sx + 1) / W - 1  # pixel coordinates to grid_sample's (align_corners=False)
    gy = (2 * sy + 1) / H - 1
    grid = torch.stack([gx[:, None, :].expand(n, size, size), gy[:, :, None].expand(n, size, size)], -1)
    y = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return y.round_().clamp_(0, 255).to(torch.uint8).contiguous(memory_format=torch.channels_last)


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    gen_device = generator.device if generator is not None else x.device
    flip = on_device(torch.rand(x.shape[0], generator=generator, device=gen_device), x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def normalize(
    x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], channels_last: bool = False
) -> torch.Tensor:
    """uint8 (N, C, H, W) to float32 (x - mean) / std, mean and std in 0-255 units."""
    m = device_constant(tuple(mean), x.device).view(1, -1, 1, 1)
    s = device_constant(tuple(std), x.device).view(1, -1, 1, 1)
    y = x.float()  # keeps x's memory layout
    y = (y.sub_(m) if y is not x else y - m).div_(s)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return y.contiguous(memory_format=fmt)


def eval_batch(
    x: torch.Tensor, t: EvalTransform, channels_last: bool = False, ten: bool = False, view: int | None = None
) -> torch.Tensor:
    """Stored uint8 images to network inputs, the test-time way: the centre crop; with ``view`` one of the
    ten patches of ``ten_crop`` (0-9: TL, TR, BL, BR, centre, then the same mirrored), so that ten-patch
    testing holds one patch's batch at a time; with ``ten=True`` all ten at once ((N, C, S, S) ->
    (N * 10, C, crop, crop), image-major). The mean image is cropped with the images, before subtracting."""
    x = resize_batch(x, t.image_size, t.interpolation)
    mean = t.mean_image_on(x.device)
    if ten:
        x = ten_crop(x if mean is None else x.float() - mean, t.crop_size).flatten(0, 1)
    elif view is not None:
        x = crop_view(x, t.crop_size, view)
        x = x if mean is None else x.float() - crop_view(mean, t.crop_size, view)
    else:
        x = center_crop(x, t.crop_size)
        x = x if mean is None else x.float() - center_crop(mean, t.crop_size)
    if t.pad:
        x = F.pad(x, (t.pad,) * 4)
    return normalize(match_channels(x, t.channels), t.mean, t.std, channels_last)


PCA_FORMS = ("cuda-convnet", "fb.resnet")


def pca_lighting(
    x: torch.Tensor,
    eigval: torch.Tensor,
    eigvec: torch.Tensor,
    std: float = 0.1,
    generator: torch.Generator | None = None,
    form: str = "cuda-convnet",
) -> torch.Tensor:
    """The paper's PCA colour augmentation (§4.1) on a float (N, 3, H, W) batch in 0-255 units.

    To every pixel of image n add ``sum_i a_i s_i p_i``: p_i are the eigenvectors (columns of
    ``eigvec``) of the 3x3 covariance of the training set's RGB values, a_i ~ N(0, std) is drawn
    once per image per use, and ``eigval`` holds the eigenvalues of pixels scaled to [0, 1] (what
    ``rgb_pca`` returns and ``prepare`` stores). The two forms differ in s_i:

    - ``"cuda-convnet"`` (Krizhevsky's own code, cuda-convnet2's ``convdata.py``): s_i is the standard
      deviation along p_i in grey levels, ``sqrt(lambda_i)`` of the 0-255 covariance, so the shift
      along p_i has std ``std * sqrt(lambda_i)`` grey levels (CIFAR-10, std 0.1: 10.6, 2.9 and 1.3
      grey levels). The batch is then scaled by 1 / (1 + std) (``TrainAugment`` does it after the
      normalisation, on centred data, as cuda-convnet scaled its mean-subtracted batch).
    - ``"fb.resnet"`` (fb.resnet.torch and torchvision-era ports): s_i is the eigenvalue of [0, 1]
      pixels, times 255: on CIFAR-10 a shift of std 4.4, 0.32 and 0.07 grey levels, two of the three
      below quantisation; no rescaling.
    """
    if form not in PCA_FORMS:
        raise ValueError(f"PCA lighting form must be one of {', '.join(PCA_FORMS)}, not {form!r}")
    gen_device = generator.device if generator is not None else x.device
    alpha = on_device(torch.randn(x.shape[0], 3, generator=generator, device=gen_device), x.device) * std
    val = on_device(eigval, x.device)
    scale = 255.0 * (val.clamp_min(0).sqrt() if form == "cuda-convnet" else val)  # grey levels per unit of a_i
    shift = (alpha * scale) @ on_device(eigvec, x.device).T  # N, 3: sum_i a_i s_i p_i
    return x + shift[:, :, None, None]


def rgb_pca(images: torch.Tensor, max_images: int = 10000) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (descending) and eigenvectors (columns) of the RGB covariance of a uint8
    (N, 3, H, W) tensor, pixel values scaled to [0, 1], from up to max_images images."""
    step = max(1, len(images) // max_images)
    x = images[::step].permute(1, 0, 2, 3).reshape(3, -1).double() / 255.0
    cov = torch.cov(x, correction=0)
    val, vec = torch.linalg.eigh(cov)
    order = val.argsort(descending=True)
    return val[order].clamp_min(0).float(), vec[:, order].float()


TEN_VIEWS = 10


def crop_view(x: torch.Tensor, size: int, view: int) -> torch.Tensor:
    """Patch ``view`` (0-9) of ``ten_crop``: TL, TR, BL, BR, centre, then the same mirrored."""
    h, w = x.shape[-2:]
    if size > min(h, w):
        raise ValueError(f"crop {size} is larger than the {h}x{w} images")
    corner = view % 5
    if corner == 4:
        patch = center_crop(x, size)
    else:
        top = 0 if corner < 2 else h - size
        left = 0 if corner % 2 == 0 else w - size
        patch = x[..., top : top + size, left : left + size]
    return patch.flip(-1) if view >= 5 else patch


def ten_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The paper's test-time patches (§4.1): four corners and centre, then their mirror images.

    (N, C, S, S) -> (N, 10, C, size, size), in the order TL, TR, BL, BR, centre, then the same flipped.
    """
    h, w = x.shape[-2:]
    if size > min(h, w):
        raise ValueError(f"crop {size} is larger than the {h}x{w} images")
    crops = [
        x[..., :size, :size],
        x[..., :size, w - size :],
        x[..., h - size :, :size],
        x[..., h - size :, w - size :],
        center_crop(x, size),
    ]
    five = torch.stack(crops, 1)
    return torch.cat([five, five.flip(-1)], 1)


def random_affine(
    x: torch.Tensor, scale: float, squeeze: float, shear: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """LeCun et al.'s (1998) planar affine distortions, one draw per image of a (N, C, H, W) batch
    about its centre: scaling by 1 + u (u uniform in [-scale, scale]), squeezing (the width times
    1 + v and the height divided by it, v in [-squeeze, squeeze]) and horizontal shearing (x + w y, w
    in [-shear, shear]); bilinear, zeros outside (the images' background before normalisation).
    Returns float32 in the input's units. Translations are the random crop's (``translate``)."""
    n = x.shape[0]
    gen_device = generator.device if generator is not None else x.device
    u = on_device(torch.rand(n, 3, generator=generator, device=gen_device), x.device) * 2 - 1
    s = 1 + scale * u[:, 0]
    q = 1 + squeeze * u[:, 1]
    w = shear * u[:, 2]
    sx, sy = s * q, s / q
    # affine_grid maps output coordinates to input ones: the inverse of [[sx, w], [0, sy]]
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 1] = 1 / sx, -w / (sx * sy), 1 / sy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@dataclass
class TrainAugment:
    """Training-time augmentation: random crop (optionally after a zero-pad shift), flips, LeCun's
    affine distortions (``affine_*``; 0 turns each off) and the PCA colour noise (``lighting`` = the
    std of its alphas; 0 turns it off; ``lighting_form``: see ``pca_lighting``). ``place`` puts the
    eigen-decomposition on the training device.

    The crops and flips draw from ``generator``; the distortions and the colour noise from
    ``noise_generator`` (``generator`` when it is not given), so that two runs that differ only in
    the noise see the same crops and flips, batch after batch."""

    random_crop: bool = True
    translate: int = 0
    flip: bool = True
    lighting: float = 0.0
    lighting_form: str = "cuda-convnet"  # see pca_lighting
    eigval: torch.Tensor | None = None
    eigvec: torch.Tensor | None = None
    affine_scale: float = 0.0
    affine_squeeze: float = 0.0
    affine_shear: float = 0.0
    # RandomResizedCrop instead of the fixed-size random crop: the boxes come with each batch (the
    # loader's ``boxes_for``), or the crops were already taken where the images were decoded
    random_resized_crop: bool = False
    # torchvision.transforms.v2's automatic augmentation (AUTO_AUGMENT's names; "" off) on the uint8
    # crops, and random erasing (the probability per image) on the normalised ones: one draw per image
    auto_augment: str = ""
    ra_magnitude: int = 9
    random_erase: float = 0.0

    def place(self, device: torch.device) -> TrainAugment:
        """Put the PCA eigen-decomposition on ``device`` now, not in the first step; returns self."""
        if self.eigval is not None and self.eigvec is not None:
            self.eigval, self.eigvec = self.eigval.to(device), self.eigvec.to(device)
        return self

    @property
    def distorts(self) -> bool:
        return bool(self.affine_scale or self.affine_squeeze or self.affine_shear)

    def __call__(
        self,
        x: torch.Tensor,
        t: EvalTransform,
        generator: torch.Generator | None = None,
        channels_last: bool = False,
        noise_generator: torch.Generator | None = None,
        boxes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        noise = noise_generator if noise_generator is not None else generator
        mean = t.mean_image_on(x.device)  # the paper's mean image: cropped with the images, then subtracted
        if self.random_resized_crop:
            if mean is not None:
                raise ValueError("RandomResizedCrop's boxes vary in size: it cannot subtract the per-pixel mean image")
            if boxes is not None:  # boxes of the stored image_size squares
                x = resized_crop_batch(resize_batch(x, t.image_size), boxes, t.crop_size)
            elif x.shape[-2:] != (t.crop_size, t.crop_size):
                raise ValueError(f"RandomResizedCrop: no boxes for a batch of {tuple(x.shape[-2:])} images")
            if self.flip:
                x = random_flip(x, generator)
        elif self.random_crop and (t.crop_size < t.image_size or self.translate):
            x = resize_batch(x, t.image_size)
            if mean is None:
                x = random_crop(x, t.crop_size, self.translate, generator, flip=self.flip)
            else:
                x = random_crop_minus_mean(x, mean, t.crop_size, self.translate, generator, flip=self.flip)
        else:
            x = center_crop(resize_batch(x, t.image_size), t.crop_size)
            if mean is not None:
                x = x.float() - center_crop(mean, t.crop_size)
            if self.flip:
                x = random_flip(x, generator)
        if self.auto_augment:
            if x.dtype != torch.uint8:  # the policies' magnitudes are for 0-255 images (a float resize's output)
                x = x.round().clamp(0, 255).to(torch.uint8)
            x = per_image(x, auto_augment_policy(self.auto_augment, self.ra_magnitude))
        if t.pad:
            x = F.pad(x, (t.pad,) * 4)
        if self.distorts:
            x = random_affine(x, self.affine_scale, self.affine_squeeze, self.affine_shear, noise)
        x = match_channels(x, t.channels)
        if self.lighting > 0:
            if self.eigval is None or self.eigvec is None or x.shape[1] != 3:
                raise ValueError("PCA lighting needs 3-channel images and the training set's eigen-decomposition")
            x = pca_lighting(x.float(), self.eigval, self.eigvec, self.lighting, noise, self.lighting_form)
            if self.lighting_form == "cuda-convnet":  # the batch scaled down as cuda-convnet's was, once centred
                return self._erase(normalize(x, t.mean, t.std, channels_last) * (1.0 / (1.0 + self.lighting)))
        return self._erase(normalize(x, t.mean, t.std, channels_last))

    def _erase(self, x: torch.Tensor) -> torch.Tensor:
        if self.random_erase <= 0:
            return x
        return per_image(x, v2.RandomErasing(p=self.random_erase, value=0))  # torchvision's: after Normalize


def auto_augment_policy(name: str, ra_magnitude: int = 9) -> Any:
    """torchvision.transforms.v2's policy of that name (bilinear, as torchvision's references; the names
    are the reference script's, ``config.AUTO_AUGMENT``)."""
    bilinear = v2.InterpolationMode.BILINEAR
    policies = {
        "ta_wide": lambda: v2.TrivialAugmentWide(interpolation=bilinear),
        "ra": lambda: v2.RandAugment(magnitude=ra_magnitude, interpolation=bilinear),
        "imagenet": lambda: v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET, interpolation=bilinear),
        "augmix": lambda: v2.AugMix(interpolation=bilinear),
    }
    if name not in policies:
        raise ValueError(f"auto_augment: unknown policy {name!r} (one of {', '.join(policies)})")
    return policies[name]()


def per_image(x: torch.Tensor, transform: Any) -> torch.Tensor:
    """``transform`` applied to each image of the batch on its own (its own draw from torch's global
    generator, which training seeds per epoch and checkpoints save), stacked back channels-last.
    torchvision's policies take one draw per call: called on the batch they would give every image
    the same operation and magnitude."""
    out = torch.stack([transform(img) for img in x])
    return out.contiguous(memory_format=torch.channels_last)


def mean_image(images: torch.Tensor, size: int, max_images: int = 10000) -> torch.Tensor:
    """The per-pixel mean (C, size, size), 0-255, of a uint8 (N, C, H, W) tensor (up to max_images)."""
    step = max(1, len(images) // max_images)
    m = images[::step].double().mean(0, keepdim=True)
    if m.shape[-1] != size or m.shape[-2] != size:
        m = F.interpolate(m, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return m[0].float()


def channel_stats(images: torch.Tensor, max_images: int = 10000) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (0-255 units) of a uint8 (N, C, H, W) tensor, from up to max_images."""
    step = max(1, len(images) // max_images)
    x = images[::step].float()
    dims = (0, 2, 3)
    return tuple(x.mean(dims).tolist()), tuple(x.std(dims).clamp_min(1e-3).tolist())
