"""An exponential moving average of the weights (``--model-ema``), as torchvision's reference script
keeps one: ``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn``, over parameters and
buffers, updated every ``model_ema_steps`` optimizer steps, a copy of the weights through the warm-up,
and the decay adjusted to the run's length (``effective_decay``).

The update itself is ``WeightEMA.update_parameters``: the same arithmetic as AveragedModel's (a test
checks them bit for bit), written again because AveragedModel's reads its ``n_averaged`` buffer on the
host twice and copies it to the device on every update, three waits for the device on CUDA; this one
counts the updates on the host, so an update queues its kernels and the loop goes on.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def effective_decay(decay: float, steps: int, batch_size: int, epochs: int) -> float:
    """The decay per update, torchvision's rule: ``1 - min(1, (1 - decay) x batch x steps / epochs)``
    (pycls's adjustment, so that one ``decay`` suits runs of other batch sizes and lengths;
    ``batch_size`` is the global batch, every process's images of one optimizer step)."""
    return 1.0 - min(1.0, (1.0 - decay) * batch_size * steps / epochs)


class WeightEMA(AveragedModel):
    """The averaged copy of ``model`` (``.module``), on the model's device, decaying by ``decay`` per
    update, updated every ``every`` optimizer steps (``after_step``). ``updates`` counts the updates
    on the host; ``n_averaged`` (AveragedModel's buffer) follows it."""

    def __init__(self, model: nn.Module, decay: float, every: int = 1) -> None:
        super().__init__(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self.decay, self.every = decay, every
        self.updates = 0
        self.module.eval()  # evaluated, never trained: dropout off
        self.module.requires_grad_(False)

    @torch.no_grad()
    def update_parameters(self, model: nn.Module, copy: bool = False) -> None:
        """Average ``model``'s current weights in; ``copy``: take them as they are instead (the first
        update, and every update during the warm-up, as torchvision resets its average there)."""
        mine = [*self.module.parameters(), *self.module.buffers()]
        theirs = [t.detach() for t in (*model.parameters(), *model.buffers())]
        if len(mine) != len(theirs):
            raise ValueError(f"the EMA holds {len(mine)} tensors, the model {len(theirs)}")
        floats = [(a, b) for a, b in zip(mine, theirs) if a.is_floating_point()]
        if copy or self.updates == 0 or not floats:
            torch._foreach_copy_(mine, theirs)
        else:
            assert self.multi_avg_fn is not None
            self.multi_avg_fn([a for a, _ in floats], [b for _, b in floats], self.n_averaged)
            for a, b in zip(mine, theirs):
                if not a.is_floating_point():  # integer buffers (counters) follow the model
                    a.copy_(b)
        self.updates = 0 if copy else self.updates + 1
        self.n_averaged.fill_(self.updates)

    def after_step(self, model: nn.Module, global_step: int, warming: bool) -> None:
        """Called after optimizer step number ``global_step`` (1-based) has updated ``model``; ``warming``:
        that step's rate was a warm-up one (the average then copies the weights)."""
        if global_step % self.every == 0:
            self.update_parameters(model, copy=warming)

    def state(self) -> dict[str, torch.Tensor]:
        """The averaged weights as a plain state dict of the model (what checkpoints keep as ``model_ema``)."""
        return {k: v.detach().cpu() for k, v in self.module.state_dict().items()}

    def load(self, state: dict[str, torch.Tensor], updates: int) -> None:
        self.module.load_state_dict(state)
        self.updates = updates
        self.n_averaged.fill_(updates)
