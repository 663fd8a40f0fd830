"""The paper's claims as runnable experiments: ``alexnet experiment list`` / ``alexnet experiment NAME``.

    base     what every experiment shares: arms over seeds, statistics, verdicts, the report page
    plots    the figures
    paper    the experiments themselves (each registered with ``@experiment``)
    runner   ``run_experiment``: one by name, into result.json and report.md
    report   experiment folders gathered into one Markdown and HTML page

Usage::

    from alexnet.experiments import run_experiment
    result = run_experiment("lrn", "cifar10:../shared/data", "runs/exp/lrn")   # result.json's dict
"""

from .base import Spec, report_markdown
from .runner import EXPERIMENTS, run_experiment

__all__ = ["EXPERIMENTS", "Spec", "run_experiment", "report_markdown"]
