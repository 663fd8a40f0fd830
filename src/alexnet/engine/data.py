"""The data of a training config: its training and validation sets, the statistics it normalises
with (measured on the training set, or stored by ``prepare``), and the evaluation transform."""

from __future__ import annotations

from typing import Any

import torch

from ..config import TrainConfig
from ..data.datasets import InMemoryDataset, hold_out, load_dataset, subset
from ..data.packed.reader import packed_stats
from ..data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvalTransform,
    TrainAugment,
    channel_stats,
    match_channels,
    mean_image,
    rgb_pca,
)
from ..errors import UserError
from ..models import model_info

# (x - 20) / 200 maps 0 to -0.1 and 255 to 1.175: LeNet-5's input range, mean about 0 and variance
# about 1 on MNIST (LeCun et al. 1998, §II.A)
LECUN_MEAN, LECUN_STD = 20.0, 200.0


def _sample_images(train_ds: Any, n: int = 1000) -> torch.Tensor:
    """The training images (in memory), or an evenly spaced sample of n of them (decoded on the fly)."""
    if isinstance(train_ds, InMemoryDataset):
        return train_ds.images
    step = max(1, len(train_ds) // n)
    return torch.stack([train_ds.load(i) for i in range(0, len(train_ds), step)])


def _normalisation(
    cfg: TrainConfig, train_ds: Any, channels: int, image_size: int
) -> tuple[tuple[float, ...], tuple[float, ...], torch.Tensor | None]:
    """Mean and std (0-255 units, per channel) and the per-pixel mean image for ``cfg.normalize``,
    measured on the training set (or, for a packed dataset, read from what ``prepare`` stored)."""
    ones = (1.0,) * channels
    if cfg.normalize == "none":
        return (0.0,) * channels, ones, None
    if cfg.normalize == "lecun":  # LeCun et al. 1998: background (0) -> -0.1, ink (255) -> 1.175
        return (LECUN_MEAN,) * channels, (LECUN_STD,) * channels, None
    if cfg.normalize == "imagenet":
        if channels != 3:
            raise UserError("normalize: 'imagenet' needs 3-channel input")
        return IMAGENET_MEAN, IMAGENET_STD, None
    meta = getattr(train_ds, "meta", None)
    if cfg.normalize == "mean_image":
        if meta and meta.get("image_size") == image_size:
            m = torch.from_numpy(packed_stats(meta["root"])["mean_image"]).permute(2, 0, 1).contiguous()
        else:
            m = mean_image(_sample_images(train_ds), image_size)
        return (0.0,) * m.shape[0], ones, m
    if meta and "stats" in meta and channels == 3:
        stats = packed_stats(meta["root"])  # checked: the right length, finite, positive std
        mean, std = tuple(stats["channel_mean"]), tuple(stats["channel_std"])
    else:
        mean, std = channel_stats(match_channels(_sample_images(train_ds), channels))
    return (mean, std, None) if cfg.normalize == "meanstd" else (mean, ones, None)


def rgb_eigen(train_ds: Any, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The training set's RGB eigen-decomposition for the PCA colour noise: the one ``prepare``
    stored for a packed dataset, else measured on (a sample of) the training images."""
    if channels != 3:
        raise UserError("pca-lighting: needs 3-channel (RGB) input")
    meta = getattr(train_ds, "meta", None)
    if meta and "stats" in meta:
        stats = packed_stats(meta["root"])  # checked: three eigenvalues, a 3x3 of eigenvectors
        return torch.tensor(stats["eigval"]), torch.tensor(stats["eigvec"])
    images = _sample_images(train_ds)
    if images.shape[1] != 3:
        raise UserError("pca-lighting: the training images are not RGB")
    return rgb_pca(images)


def build_data(cfg: TrainConfig, *, val: bool = True) -> tuple[Any, Any, list[str], EvalTransform]:
    """The training and validation sets and the evaluation transform of a config (``val=False``:
    no validation set, None in its place). With ``val_split`` the validation set is that fraction
    of the training split, held out (``hold_out``); the dataset's own test split is then
    ``build_test``'s, evaluated only at the end."""
    info = model_info(cfg.model)
    channels = int(cfg.model_options.get("in_chans", info.in_chans))
    image_size = cfg.image_size or info.image_size
    crop_size = cfg.crop_size or (info.input_size - 2 * cfg.pad)
    if crop_size > image_size:
        raise UserError(f"crop-size {crop_size} is larger than image-size {image_size}")
    if not cfg.data:
        raise UserError("--data is required (mnist[:ROOT], cifar10[:ROOT] or an image-folder path)")
    train_ds = load_dataset(cfg.data, "train", **_load_options(cfg, image_size, channels))
    val_ds = None
    if cfg.val_split > 0:
        train_ds, held = hold_out(train_ds, cfg.val_split, cfg.seed)
        val_ds = subset(held, cfg.max_val_images, cfg.seed + 1) if val else None
    elif val:
        val_ds = subset(
            _test_split(cfg, list(train_ds.classes), image_size, channels),  # type: ignore[attr-defined]
            cfg.max_val_images,
            cfg.seed + 1,
        )
    train_ds = subset(train_ds, cfg.max_train_images, cfg.seed)
    mean, std, mimage = _normalisation(cfg, train_ds, channels, image_size)
    if mimage is not None and mimage.shape[0] != channels:
        raise UserError(f"normalize: the per-pixel mean has {mimage.shape[0]} channels, the model takes {channels}")
    t = EvalTransform(
        image_size=image_size,
        crop_size=crop_size,
        pad=cfg.pad,
        channels=channels,
        mean=tuple(mean),
        std=tuple(std),
        mean_image=mimage,
    )
    return train_ds, val_ds, list(train_ds.classes), t


def build_test(cfg: TrainConfig, classes: list[str], transform: EvalTransform) -> Any:
    """With ``val_split``: the dataset's test split (``val/`` or ``test/`` of a folder, the test set of
    MNIST and CIFAR-10), for the evaluation at the end of the run; without it, None (the validation
    set is that split)."""
    if cfg.val_split <= 0:
        return None
    return subset(_test_split(cfg, classes, transform.image_size, transform.channels), cfg.max_val_images, cfg.seed + 1)


def _load_options(cfg: TrainConfig, image_size: int, channels: int) -> dict[str, Any]:
    limit = int(cfg.cache_limit_gb * (1 << 30))
    return dict(image_size=image_size, channels=channels, workers=cfg.workers, cache_limit_bytes=limit)


def _test_split(cfg: TrainConfig, classes: list[str], image_size: int, channels: int) -> Any:
    return load_dataset(cfg.data, "val", classes=classes, **_load_options(cfg, image_size, channels))


def make_augment(cfg: TrainConfig, train_ds: Any, channels: int) -> TrainAugment:
    """The run's training augmentation from its config (and, for the PCA colour noise, the training
    set's RGB eigen-decomposition)."""
    augment = TrainAugment(
        random_crop=cfg.random_crop,
        translate=cfg.translate,
        flip=cfg.flip,
        lighting=cfg.pca_lighting,
        lighting_form=cfg.pca_lighting_form,
        affine_scale=cfg.affine_scale,
        affine_squeeze=cfg.affine_squeeze,
        affine_shear=cfg.affine_shear,
        random_resized_crop=cfg.random_resized_crop,
        auto_augment=cfg.auto_augment,
        ra_magnitude=cfg.ra_magnitude,
        random_erase=cfg.random_erase,
    )
    if cfg.pca_lighting > 0:
        augment.eigval, augment.eigvec = rgb_eigen(train_ds, channels)
    return augment
