"""MixUp and CutMix (``--mixup-alpha``, ``--cutmix-alpha``): torchvision's draws and targets, the
soft-target loss, one of the two per batch when both are on, bad values refused. Exact resume with
both on is in tests/test_resume.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from alexnet import TrainConfig, UserError
from alexnet.engine.mixing import make_mix
from alexnet.engine.step import cross_entropy


def batch(n: int = 16, classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 24, 24, generator=g), torch.randint(0, classes, (n,), generator=g)


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_targets_sum_to_one_and_are_torchvisions_for_the_same_draw(kind: str) -> None:
    x, y = batch()
    mix = make_mix(0.4 if kind == "mixup" else 0.0, 1.0 if kind == "cutmix" else 0.0, 10)
    assert mix is not None
    torch.manual_seed(7)
    ours_x, ours_t = mix(x, y)
    ref = v2.MixUp(alpha=0.4, num_classes=10) if kind == "mixup" else v2.CutMix(alpha=1.0, num_classes=10)
    torch.manual_seed(7)
    ref_x, ref_t = ref(x, y)
    assert torch.equal(ours_x, ref_x) and torch.equal(ours_t, ref_t)
    assert ours_t.shape == (16, 10) and torch.allclose(ours_t.sum(1), torch.ones(16))
    # each target mixes the image's own label and its neighbour's (the batch rolled by one)
    lam = ours_t[torch.arange(16), y]
    assert (lam > 0).all() and not torch.equal(ours_x, x)


def test_both_on_chooses_one_per_batch_and_differs_between_batches() -> None:
    mix = make_mix(0.2, 1.0, 10)
    assert mix is not None
    x, y = batch()
    torch.manual_seed(0)
    kinds = set()
    for _ in range(20):
        mx, _ = mix(x, y)
        # CutMix leaves pixels outside its box exactly as they were; MixUp changes every pixel
        kinds.add("cutmix" if (mx == x).any() else "mixup")
    assert kinds == {"mixup", "cutmix"}


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_the_soft_target_loss_is_torchs(smoothing: float) -> None:
    x, y = batch()
    mix = make_mix(0.4, 0.0, 10)
    assert mix is not None
    _, t = mix(x, y)
    logits = torch.randn(16, 10, generator=torch.Generator().manual_seed(3))
    expect = F.cross_entropy(logits, t, label_smoothing=smoothing)
    for deterministic in (False, True):
        assert cross_entropy(logits, t, smoothing, deterministic) == pytest.approx(float(expect), rel=1e-6)


def test_off_by_default_and_bad_values_refused() -> None:
    assert make_mix(0.0, 0.0, 10) is None
    for key in ("mixup_alpha", "cutmix_alpha"):
        with pytest.raises(UserError, match=key.replace("_", "-")):
            TrainConfig(**{key: -0.1}).validate()
        with pytest.raises(UserError, match=key.replace("_", "-")):
            TrainConfig(**{key: 1e9}).validate()


@pytest.mark.parametrize("policy", ["ta_wide", "ra", "imagenet", "augmix"])
def test_automatic_augmentation_draws_per_image(policy: str) -> None:
    """Sixteen copies of one image come out different: one draw per image, never one for the batch."""
    from alexnet.data.transforms import EvalTransform, TrainAugment

    img = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x = img.expand(16, -1, -1, -1).contiguous()
    t = EvalTransform(image_size=32, crop_size=32, pad=0, channels=3, mean=(0.0,) * 3, std=(1.0,) * 3)
    aug = TrainAugment(random_crop=False, flip=False, auto_augment=policy)
    torch.manual_seed(0)
    out = aug(x, t)
    assert out.shape == (16, 3, 32, 32) and out.is_floating_point()
    distinct = {out[i].numpy().tobytes() for i in range(16)}
    assert len(distinct) >= 8, f"{policy}: {len(distinct)} distinct images of 16"


def test_random_erasing_erases_each_image_in_its_own_box() -> None:
    from alexnet.data.transforms import EvalTransform, TrainAugment

    x = torch.full((8, 3, 32, 32), 200, dtype=torch.uint8)
    t = EvalTransform(image_size=32, crop_size=32, pad=0, channels=3, mean=(100.0,) * 3, std=(50.0,) * 3)
    torch.manual_seed(0)
    out = TrainAugment(random_crop=False, flip=False, random_erase=1.0)(x, t)
    erased = out == 0  # erased to 0 after normalisation (torchvision's value=0); the rest is (200 - 100) / 50
    assert torch.all(out[~erased] == 2.0)
    boxes = {erased[i, 0].nonzero().tolist().__repr__() for i in range(8)}
    assert all(erased[i].any() for i in range(8)) and len(boxes) == 8


def test_automatic_augmentation_options_are_checked() -> None:
    from alexnet.config import AUTO_AUGMENT
    from alexnet.data.transforms import auto_augment_policy

    for name in AUTO_AUGMENT:
        auto_augment_policy(name)
    for bad, match in (
        ({"auto_augment": "autoaug"}, "auto-augment"),
        ({"ra_magnitude": 31}, "ra-magnitude"),
        ({"random_erase": 1.5}, "random-erase"),
        ({"auto_augment": "ta_wide", "normalize": "mean_image"}, "auto-augment"),
    ):
        with pytest.raises(UserError, match=match):
            TrainConfig(**bad).validate()
