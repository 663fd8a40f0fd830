"""Published weights as a run folder: torchvision's ImageNet AlexNet (``alexnet weights torchvision``).

alexnet weights torchvision --out runs/alexnet-tv [--file alexnet-owt-7be5be79.pth]
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torchvision.models import AlexNet_Weights

from .checkpoint import CheckpointRecord, nonfinite_tensors, save_checkpoint
from .data.imagenet import imagenet_names, imagenet_wnids
from .data.transforms import IMAGENET_MEAN, IMAGENET_STD, EvalTransform
from .errors import UserError
from .files import file_sha256, new_folder, staged_folder
from .models import create_model
from .version import __version__


def torchvision_weights(out: str | os.PathLike[str], file: str | None = None) -> Path:
    """A run folder (``best.pt``) for ``alexnet_tv`` with torchvision's ``AlexNet_Weights.IMAGENET1K_V1``:
    from ``file`` (a state dict saved by torchvision), else through torchvision's weights API (the
    torch hub cache; a download when it is not there). The classes are the 1000 ILSVRC2012 WNIDs
    (what a prepared ImageNet folder holds) with torchvision's names as their display names; the eval
    transform is that of those weights: shorter side 256, centre 224, ImageNet mean and std."""
    weights = AlexNet_Weights.IMAGENET1K_V1
    outp = Path(out)
    new_folder(outp)  # before the work
    if file:
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise UserError(f"--file {file}: no such file") from None
        except Exception as e:
            raise UserError(
                f"--file {file}: not a readable state dict ({type(e).__name__}); it was not loaded"
            ) from None
        source = {"file": str(Path(file).resolve()), "sha256": file_sha256(Path(file))}
    else:
        try:
            state = weights.get_state_dict(progress=True, check_hash=True)
        except Exception as e:  # offline, or a server error
            raise UserError(
                f"torchvision's AlexNet weights could not be fetched ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:120] if str(e) else ''}); download {weights.url} elsewhere "
                "and pass --file PATH"
            ) from None
        source = {"url": weights.url}
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    bad = nonfinite_tensors(state)
    if bad:  # not what torchvision published: refused rather than labelled IMAGENET1K_V1
        raise UserError(
            f"--file {file}: holds NaN or infinite values ({', '.join(bad[:3])}); not torchvision's trained weights"
        )
    model = create_model("alexnet_tv", num_classes=1000)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise UserError(
            f"--file {file}: not torchvision's AlexNet state dict ({str(e).splitlines()[0][:160]})"
        ) from None
    classes, names = imagenet_wnids(), imagenet_names()
    transform = EvalTransform(256, 224, 0, 3, IMAGENET_MEAN, IMAGENET_STD)
    metrics = {
        "val_top1_error": 1 - weights.meta["_metrics"]["ImageNet-1K"]["acc@1"] / 100,
        "val_top5_error": 1 - weights.meta["_metrics"]["ImageNet-1K"]["acc@5"] / 100,
        "source": "torchvision's published figures (single centre crop, ImageNet val)",
    }
    ck = CheckpointRecord(
        model=model.state_dict(),
        model_name="alexnet_tv",
        num_classes=1000,
        classes=classes,
        class_names=names,
        eval_transform=transform.to_dict(),
        config={"model": "alexnet_tv", "data": "imagenet (torchvision's training)", "weights": source},
        environment={"alexnet": __version__, "torch": str(torch.__version__)},
        epoch=90,
        metrics=metrics,
    )
    with staged_folder(outp) as tmp:  # the run folder appears whole, or not at all
        save_checkpoint(ck, tmp / "best.pt")
        (tmp / "classes.txt").write_text("".join(f"{w} {n}\n" for w, n in zip(classes, names)))
    return outp
