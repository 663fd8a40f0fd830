"""The protocol's verdicts (``docs/paper/protocol.md``, "Verdicts"): what a claim's paired effects say,
in one of ``STATUSES``, with the test and the interval behind it.

Version 2 of the protocol: every verdict carries the two-sided 95% interval of the effect; a test
that is not significant says whether its interval excludes the paper's size or is too wide to tell;
"the paper's size" is a band symmetric on the log scale (``SIZE_BAND``); a claim whose arms do not
measure what it is about (an arm that failed to fit, say) is "inconclusive: confounded", whatever
its p.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .stats import ALPHA, paired_t_test, sign_test

SIZE_BAND = (1 / 1.5, 1.5)  # within a factor of 1.5 of the paper's effect, either way: "about" its size
STATUSES = (
    "reproduced",
    "reproduced in direction, size differs",
    "reproduced in direction, size censored",
    "not significant",
    "not significant: excludes the paper's size",
    "inconclusive: too small a test",
    "contradicted",
    "inconclusive",
    "inconclusive: confounded",
    "measured",
)


@dataclass
class Verdict:
    """One claim's verdict: its status (one of STATUSES), the figure it rests on (what the summary
    row shows), why, and the test behind it (with ``ci``, the interval, in the test's units)."""

    claim: str
    status: str
    figure: str
    reason: str
    test: dict[str, Any] = field(default_factory=dict)
    paper: str = ""  # the paper's side of the claim, as the summary row shows it

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def fmt_test(test: dict[str, Any]) -> str:
    """``t = 2.78, df = 2, p = 0.054`` (one-sided)."""
    if test["n"] < 2:
        return f"no test: {test['n']} seed{'s' if test['n'] != 1 else ''}"
    return f"t = {test['t']:.2f}, df = {test['df']}, p = {test['p']:.3g}"


def fmt_interval(test: dict[str, Any]) -> str:
    """The test's 95% interval in its display units: ``[+0.12, +1.90] pts`` or ``[1.2x, 1.5x]``."""
    ci = test.get("ci")
    if not ci or any(v is None or math.isnan(v) for v in ci):
        return "—"
    if test.get("log"):
        return f"[{math.exp(ci[0]):.2f}x, {math.exp(ci[1]):.2f}x]"
    scale, unit = test.get("scale", 100.0), test.get("unit", " pts")
    return f"[{scale * ci[0]:+.2f}, {scale * ci[1]:+.2f}]{unit}"


@dataclass(frozen=True)
class Precondition:
    """What a claim's arms must show before its test means what the claim says (``ok``), and why."""

    ok: bool
    reason: str


def judge(
    effects: list[float],
    paper: float | None,
    claim: str,
    *,
    figure: str,
    claimed: str = "",
    scale: float = 100.0,
    unit: str = " pts",
    log: bool = False,
    censored: int = 0,
    signs: list[int] | None = None,
    preconditions: Sequence[Precondition] = (),
) -> Verdict:
    """The protocol's verdict on one claim from per-seed paired effects (positive = the paper's
    direction), by a one-sided paired t-test at 5% with n - 1 degrees of freedom and its two-sided
    95% interval. ``log``: effects are logs of ratios and ``paper`` is the paper's ratio (6 for "six
    times"). ``censored`` runs never reached their target (``effects`` are then bounds): the exact sign
    test on ``signs`` decides, and the verdict is never "reproduced"."""
    test = paired_t_test(effects)
    test.update(what=claim, scale=scale, unit=unit, log=log)
    target = None if paper is None else (math.log(paper) if log else paper)
    test["paper_effect"] = target

    def verdict(status: str, reason: str, t: dict[str, Any] = test) -> Verdict:
        return Verdict(claim, status, figure, reason, t, paper=claimed)

    failed = [p.reason for p in preconditions if not p.ok]
    if failed:
        return verdict("inconclusive: confounded", "the arms do not measure the claim: " + "; ".join(failed))
    if censored:
        st = sign_test(signs or [])
        # no interval: the t interval of the uncensored pairs alone would say more than the runs do
        st.update(what=f"{claim} (sign test: {censored} censored run(s))", ci=None, log=log, scale=scale, unit=unit)
        if st["n"] and st["p"] < ALPHA:
            return verdict(
                "reproduced in direction, size censored",
                f"{censored} run(s) never reached the target, so the size is only a bound; the sign "
                f"test supports the direction ({st['positive']} of {st['n']} pairs, p = {st['p']:.3g})",
                st,
            )
        return verdict(
            "inconclusive",
            f"{censored} run(s) never reached the target and the sign test does not "
            f"support the claim ({st['positive']} of {st['n']} ordered pairs, p = {st['p']:.3g})",
            st,
        )
    if test["n"] < 2 or test["mean"] is None:
        return verdict("inconclusive", f"no test: {test['n']} seed(s)")
    stat = f"{fmt_test(test)}; 95% interval {fmt_interval(test)}"
    if test["p"] >= ALPHA:
        opposite = 1.0 - test["p"]
        if opposite < ALPHA and test["mean"] < 0:
            return verdict(
                "contradicted", f"significant the other way ({stat}; one-sided p the other way {opposite:.3g})"
            )
        if target is None:
            return verdict("not significant", stat)
        if test["ci"][1] < target:
            return verdict(
                "not significant: excludes the paper's size",
                f"{stat}: the interval lies below the paper's {_shown(target, test)}",
            )
        return verdict(
            "inconclusive: too small a test",
            f"{stat}: the interval holds both no effect and the paper's {_shown(target, test)}",
        )
    if target is None:
        return verdict("reproduced", f"significant ({stat}); the paper gives no size")
    ratio = math.exp(test["mean"] - target) if log else test["mean"] / target
    test["ratio_to_paper"] = ratio
    lo, hi = SIZE_BAND
    if lo <= ratio <= hi:
        return verdict("reproduced", f"significant ({stat}); {ratio:.2f}x the paper's effect")
    return verdict(
        "reproduced in direction, size differs",
        f"significant ({stat}); {ratio:.2f}x the paper's effect, outside {lo:.2f}x-{hi:.2f}x",
    )


def _shown(target: float, test: dict[str, Any]) -> str:
    if test.get("log"):
        return f"{math.exp(target):.3g}x"
    return f"{test['scale'] * target:+.2f}{test['unit']}"


def judge_level(
    values: list[float], paper: float, claim: str, *, figure: str, claimed: str = "", tolerance: float = 0.25
) -> Verdict:
    """A claimed level (an error rate), not a difference: reproduced when a one-sided one-sample
    t-test puts the mean below (1 + tolerance) x the paper's figure at 5%; contradicted when it puts
    it above; otherwise the interval holds the bound: too small a test."""
    bound = paper * (1 + tolerance)
    below = paired_t_test([bound - v for v in values])
    level = paired_t_test(values)
    below.update(
        what=f"{claim}: below {bound * 100:.3g}% ({1 + tolerance:g}x the paper's)",
        scale=100.0,
        unit="%",
        log=False,
        ci=level["ci"],
        level=True,
    )
    if below["n"] < 2 or below["p"] is None:
        return Verdict(claim, "inconclusive", figure, f"no test: {below['n']} seed(s)", below, claimed)
    where = f"95% interval of the error {_level_interval(level)}"
    if below["p"] < ALPHA:
        return Verdict(
            claim, "reproduced", figure, f"below {bound * 100:.3g}% ({fmt_test(below)}; {where})", below, claimed
        )
    above = paired_t_test([v - bound for v in values])
    if above["p"] is not None and above["p"] < ALPHA:
        above.update(
            what=f"{claim}: above {bound * 100:.3g}%", scale=100.0, unit="%", log=False, ci=level["ci"], level=True
        )
        return Verdict(
            claim, "contradicted", figure, f"above {bound * 100:.3g}% ({fmt_test(above)}; {where})", above, claimed
        )
    return Verdict(
        claim,
        "inconclusive: too small a test",
        figure,
        f"neither below nor above {bound * 100:.3g}% at 5% ({fmt_test(below)}; {where})",
        below,
        claimed,
    )


def _level_interval(test: dict[str, Any]) -> str:
    ci = test.get("ci")
    return "—" if not ci else f"[{100 * ci[0]:.2f}%, {100 * ci[1]:.2f}%]"


def measured(
    effects: list[float], claim: str, *, figure: str, claimed: str = "—", scale: float = 100.0, unit: str = " pts"
) -> Verdict:
    """An effect the paper makes no claim about: reported with its one-sided paired t-test (positive:
    an increase) and interval, status "measured", no verdict."""
    test = paired_t_test(effects)
    test.update(what=claim, scale=scale, unit=unit, log=False)
    return Verdict(claim, "measured", figure, f"{fmt_test(test)}; 95% interval {fmt_interval(test)}", test, claimed)


def fmt_any_test(t: dict[str, Any]) -> str:
    """A verdict's test in one cell: the t-test's t, df, p, or the sign test's count and p."""
    if not t:
        return "—"
    if t.get("kind") == "sign":
        return f"sign test: {t['positive']} of {t['n']} pairs, p = {t['p']:.3g}"
    if t.get("n", 0) < 2 or t.get("t") is None:
        return f"no test ({t.get('n', 0)} seeds)"
    return f"t = {t['t']:.2f}, df = {t['df']}, p = {t['p']:.3g}"


def fmt_any_interval(t: dict[str, Any]) -> str:
    """A verdict's interval in one cell (a level claim's in %, a difference's in its units)."""
    if not t or not t.get("ci"):
        return "—"
    if t.get("level"):
        return _level_interval(t)
    return fmt_interval(t)
