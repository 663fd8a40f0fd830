"""The training step never waits for the device between log points: no ``.item()``, ``bool()``,
``.tolist()``, ``.cpu()``, ``int()`` or ``float()`` of a tensor from the first step of an epoch to its
last, only at the log points (here: the end of the epoch). Run on the CPU with the accelerator's
crop path (the CPU's per-image crop loop reads offsets with ``tolist``, which is free there).

Nor does a step copy anything to the device but its batch and labels (the input pipeline's
transfer): no tensor built from Python numbers (``torch.tensor``: on a GPU a blocking copy from
pageable memory), no ``.to(device)`` or ``.cuda()`` of a constant (a mean, a std, the mean image, the
PCA eigenvectors). On the CPU such a call is free, so the instrument counts the calls themselves."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest
import torch

from alexnet import TrainConfig
from alexnet.data import transforms
from alexnet.engine.step import TrainStep
from alexnet.training import train

SYNCING = ("item", "__bool__", "tolist", "cpu", "__int__", "__float__", "__index__")


def _names_a_device(args: tuple, kwargs: dict) -> bool:
    """Whether ``Tensor.to(*args, **kwargs)`` names a device (not only a dtype or a memory format)."""
    return "device" in kwargs or any(isinstance(a, (torch.device, str)) or isinstance(a, torch.Tensor) for a in args)


def _from_the_pipeline() -> bool:
    """The batch and its labels come to the device in the input pipeline: the one allowed transfer."""
    return any(f.filename.endswith(("data/pipeline.py", "data/loader.py")) for f in traceback.extract_stack()[:-2])


@pytest.fixture
def sync_counter(monkeypatch: pytest.MonkeyPatch) -> dict:
    state: dict = {"in_steps": False, "calls": [], "reads": 0, "steps": 0}
    for name in SYNCING:
        original = getattr(torch.Tensor, name)

        def wrapper(self, *a, __original=original, __name=name, **kw):  # type: ignore[no-untyped-def]
            if state["in_steps"]:
                state["calls"].append((__name, "".join(traceback.format_stack(limit=6)[:-1])))
            return __original(self, *a, **kw)

        monkeypatch.setattr(torch.Tensor, name, wrapper)
    for owner, name in ((torch, "tensor"), (torch, "as_tensor"), (torch.Tensor, "to"), (torch.Tensor, "cuda")):
        original = getattr(owner, name)

        def copying(*a, __original=original, __name=name, **kw):  # type: ignore[no-untyped-def]
            if state["in_steps"] and (__name != "to" or _names_a_device(a[1:], kw)) and not _from_the_pipeline():
                state["calls"].append((__name, "".join(traceback.format_stack(limit=6)[:-1])))
            return __original(*a, **kw)

        monkeypatch.setattr(owner, name, copying)
    begin, read = TrainStep.begin, TrainStep.read

    def counting_begin(self, lr):  # type: ignore[no-untyped-def]
        state["in_steps"] = True
        state["steps"] += 1
        return begin(self, lr)

    def counting_read(self):  # type: ignore[no-untyped-def]
        state["in_steps"] = False  # a log point: the one place the host may wait
        state["reads"] += 1
        return read(self)

    monkeypatch.setattr(TrainStep, "begin", counting_begin)
    monkeypatch.setattr(TrainStep, "read", counting_read)
    monkeypatch.setattr(transforms, "_crop_loop", transforms._crop_gather)
    return state


@pytest.mark.parametrize(
    "model,extra",
    [
        ("cifar_18pct", {}),
        ("lenet5", {"pad": 2, "image_size": 28, "accumulate": 2}),
    ],
)
def test_no_host_sync_between_log_points(
    sync_counter: dict, tiny_folder: Path, tmp_path: Path, model: str, extra: dict
) -> None:
    cfg = TrainConfig(
        model=model,
        data=str(tiny_folder),
        out=str(tmp_path / "r"),
        epochs=2,
        batch_size=16,
        lr=0.01,
        schedule="cosine",
        workers=1,
        max_train_images=128,
        log_every=1000,
        translate=2,
        pca_lighting=0.1 if model == "cifar_18pct" else 0.0,
        **extra,
    )
    train(cfg, progress=False, log=lambda s: None)
    assert sync_counter["steps"] >= 8
    calls = sync_counter["calls"]
    assert not calls, f"{len(calls)} host syncs inside the steps; the first, {calls[0][0]}, from:\n{calls[0][1]}"
    assert sync_counter["reads"] == 2  # the end of each epoch


def test_the_counter_sees_a_sync(sync_counter: dict) -> None:
    """The instrument works: a .item() between begin and read is caught."""
    sync_counter["in_steps"] = True
    torch.ones(1).item()
    assert sync_counter["calls"] and sync_counter["calls"][0][0] == "item"


def test_the_counter_sees_a_constant_copied_to_the_device(sync_counter: dict) -> None:
    sync_counter["in_steps"] = True
    torch.tensor([1.0, 2.0], device="cpu")
    torch.zeros(2).to("cpu")
    torch.zeros(2).to(torch.float64)  # a dtype only: not a copy to a device
    sync_counter["in_steps"] = False
    assert [name for name, _ in sync_counter["calls"]] == ["tensor", "to"]


def test_a_log_point_reads_the_sums(sync_counter: dict, tiny_folder: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(
        model="cifar_18pct",
        data=str(tiny_folder),
        out=str(tmp_path / "r"),
        epochs=1,
        batch_size=16,
        lr=0.01,
        workers=0,
        max_train_images=128,
        log_every=2,
    )
    train(cfg, progress=False, log=lambda s: None)
    assert sync_counter["reads"] == 4 + 1  # steps 2, 4, 6, 8 and the end of the epoch
    assert not sync_counter["calls"]
