"""A run interrupted in-process after a mid-epoch checkpoint, resumed, and compared with an
uninterrupted one: the weights must be bit for bit equal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch


def assert_resumes_bitwise(base: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_at: int) -> None:
    """Train ``base`` straight, then again with a KeyboardInterrupt at the ``stop_at``-th micro-batch
    (which must come after a mid-epoch checkpoint: ``checkpoint_every`` in ``base``), resume that
    run, and check that a mid-epoch last.pt was what it resumed from and that both end identical."""
    from alexnet import TrainConfig
    from alexnet.engine.step import TrainStep
    from alexnet.training import train

    train(TrainConfig(**base, out=str(tmp_path / "straight")), progress=False, log=lambda s: None)
    real, calls = TrainStep.micro, {"n": 0}

    def micro(self: TrainStep, *a: object, **k: object) -> None:
        calls["n"] += 1
        if calls["n"] == stop_at:
            raise KeyboardInterrupt
        real(self, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(TrainStep, "micro", micro)
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(**base, out=str(cut)), progress=False, log=lambda s: None)
    monkeypatch.setattr(TrainStep, "micro", real)
    state = torch.load(cut / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and state["train_state"]["batches_done"] > 0  # a mid-epoch checkpoint
    train(TrainConfig(**base, out=str(cut), resume=True), progress=False, log=lambda s: None)
    want = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)["model"]
    got = torch.load(cut / "last.pt", weights_only=True)["model"]
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k
