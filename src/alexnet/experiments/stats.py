"""The statistics the protocol's verdicts rest on, from ``scipy.stats`` (the ``experiments`` extra):
paired t-tests with their intervals, the exact sign test, and the power of the paired t-test.

Every test is one-sided in the paper's direction (a positive effect is what the paper claims) at
``ALPHA``, with n - 1 degrees of freedom for n paired differences; every interval is the two-sided
95% t interval of the mean effect. Undefined figures are None, so that result.json stays standard
JSON.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from ..errors import UserError

ALPHA = 0.05
LEVEL = 0.95  # the two-sided interval's coverage


def _scipy_stats() -> Any:
    try:
        from scipy import stats as scipy_stats
    except ImportError:  # an install without the extra
        raise UserError("the experiments' statistics need SciPy: pip install 'alexnet[experiments]'") from None
    return scipy_stats


def finite(values: list[float]) -> list[float]:
    return [float(v) for v in values if v is not None and not math.isnan(float(v))]


def paired_t_test(diffs: list[float], null: float = 0.0) -> dict[str, Any]:
    """One-sided t-test that the mean of ``diffs`` exceeds ``null``: t = (mean - null) / (sd / sqrt(n)),
    n - 1 degrees of freedom (``scipy.stats.ttest_1samp``), with the two-sided 95% interval of the
    mean (``ci``, in the units of ``diffs``). For paired arms, ``diffs`` are the per-seed differences;
    NaNs (runs that never got there) are left out."""
    vals = finite(diffs)
    n = len(vals)
    out: dict[str, Any] = {
        "n": n,
        "df": max(n - 1, 0),
        "mean": statistics.fmean(vals) - null if vals else None,
        "null": null,
        "t": None,
        "p": None,
        "alpha": ALPHA,
        "sided": "one (the paper's direction)",
        "ci": None,
        "ci_level": LEVEL,
        "se": None,
    }
    if n < 2:
        return out
    sd = statistics.stdev(vals)
    m = out["mean"]
    out["se"] = sd / math.sqrt(n)
    if sd == 0:  # scipy gives NaN here; the sign of a constant difference is certain
        out["t"] = math.inf if m > 0 else (-math.inf if m < 0 else 0.0)
        out["p"] = 0.0 if m > 0 else (1.0 if m < 0 else 0.5)
        out["ci"] = [m + null, m + null]
        return out
    res = _scipy_stats().ttest_1samp(vals, null, alternative="greater")
    out["t"], out["p"] = float(res.statistic), float(res.pvalue)
    out["ci"] = list(interval(vals))
    return out


def interval(values: list[float], level: float = LEVEL) -> tuple[float, float]:
    """The two-sided ``level`` t interval of the mean of ``values`` (n - 1 degrees of freedom)."""
    vals = finite(values)
    n = len(vals)
    if n < 2:
        return (math.nan, math.nan)
    m, se = statistics.fmean(vals), statistics.stdev(vals) / math.sqrt(n)
    half = float(_scipy_stats().t.ppf(0.5 + level / 2, n - 1)) * se
    return (m - half, m + half)


def sign_test(signs: list[int]) -> dict[str, Any]:
    """One-sided exact sign test that pairs favour the paper's direction (+1) over the other (-1)
    (``scipy.stats.binomtest``); pairs whose order is unknown (0: both runs censored) are left out.
    Censoring-aware: a run that never reached its target still orders its pair when the other did."""
    known = [s for s in signs if s]
    n, k = len(known), sum(1 for s in known if s > 0)
    p = float(_scipy_stats().binomtest(k, n, 0.5, alternative="greater").pvalue) if n else 1.0
    return {
        "kind": "sign",
        "n": n,
        "df": None,
        "positive": k,
        "p": p,
        "t": None,
        "alpha": ALPHA,
        "sided": "one (the paper's direction)",
    }


def per_image_test(single_errors: list[float], ensemble_errors: list[float]) -> dict[str, Any]:
    """A paired t-test over test images (n images, n - 1 degrees of freedom): each image's mean error
    over the single nets minus the ensemble's error on it (0 or 1). Positive: the ensemble is better."""
    return paired_t_test([s - e for s, e in zip(single_errors, ensemble_errors)])


# -- power (the protocol's "Seeds") --------------------------------------------------------------
def power(effect: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the one-sided paired t-test with n seeds to detect a mean effect ``effect`` when the
    per-seed differences have standard deviation ``sd``: the exact noncentral t (``scipy.stats.nct``)."""
    if n < 2 or sd <= 0:
        return math.nan
    st = _scipy_stats()
    crit = float(st.t.ppf(1 - alpha, n - 1))
    return float(st.nct.sf(crit, n - 1, effect / sd * math.sqrt(n)))


def seeds_for(effect: float, sd: float, target: float = 0.8, most: int = 200) -> int:
    """The fewest seeds (at least 3) whose power reaches ``target`` (``most`` + 1 if none up to it)."""
    for n in range(3, most + 1):
        if power(effect, sd, n) >= target:
            return n
    return most + 1


def detectable(sd: float, n: int, target: float = 0.8) -> float:
    """The smallest mean effect n seeds detect with power ``target`` (bisection on ``power``)."""
    lo, hi = 0.0, 100 * sd
    for _ in range(100):
        mid = (lo + hi) / 2
        if power(mid, sd, n) >= target:
            hi = mid
        else:
            lo = mid
    return hi


def describe(values: list[float]) -> dict[str, Any]:
    """mean, std, n of the finite values, and the values themselves (NaN kept) for result.json."""
    vals = [float(v) for v in values]
    fin = finite(vals)
    return {
        "mean": statistics.fmean(fin) if fin else math.nan,
        "std": statistics.stdev(fin) if len(fin) > 1 else math.nan,
        "n": len(fin),
        "values": vals,
    }
