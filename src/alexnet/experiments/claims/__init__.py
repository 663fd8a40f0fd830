"""The paper's claims, one module each, registered with ``@experiment`` on import (in the order
`alexnet experiment list` shows). Each module opens with its claim, where the paper makes it, the
setting the protocol fixes (``docs/paper/protocol.md``, version 2) and where its evidence is
published."""

# isort: off
from . import relu_vs_tanh, lrn, overlap_pool, dropout, augment, ten_crop, columns, lenet5, weight_decay, bias_one
from . import modern
# isort: on

__all__ = [
    "relu_vs_tanh",
    "lrn",
    "overlap_pool",
    "dropout",
    "augment",
    "ten_crop",
    "columns",
    "lenet5",
    "weight_decay",
    "bias_one",
    "modern",
]
