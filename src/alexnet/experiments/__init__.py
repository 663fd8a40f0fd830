"""The paper's claims as runnable experiments: ``alexnet experiment list`` / ``alexnet experiment NAME``.

    library     the registry (``@experiment``), a trained ``Run``, the rows and ``Outcome`` a claim returns
    context     the ``Context`` a claim runs in: the run cache, the pilot, evaluations of finished runs
    provenance  the code's commit, the training code's hash, the protocol's history and sections
    stats       t-tests, intervals, the sign test and power (scipy.stats)
    verdicts    the protocol's verdict rules
    report      one experiment's page, and folders gathered into one Markdown and HTML page
    plots       the figures
    claims/     the experiments themselves, one module per claim
    runner      ``run_experiment``: one by name, into result.json and report.md

Usage::

    from alexnet.experiments import run_experiment
    result = run_experiment("lrn", "cifar10:../shared/data", "runs/exp/lrn")   # result.json's dict
"""

from .library import Spec
from .report import report_markdown
from .runner import EXPERIMENTS, run_experiment

__all__ = ["EXPERIMENTS", "Spec", "run_experiment", "report_markdown"]
