"""The paper's claims as runnable experiments: ``alexnet experiment list`` / ``alexnet experiment NAME``.

Usage::

    from alexnet.experiments import run_experiment
    result = run_experiment("lrn", "cifar10:../shared/data", "runs/exp/lrn")   # result.json's dict
"""

from .base import EXPERIMENTS, Spec, report_markdown, run_experiment
from . import paper  # noqa: F401  (registers the experiments)

__all__ = ["EXPERIMENTS", "Spec", "run_experiment", "report_markdown"]
