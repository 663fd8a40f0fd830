"""``alexnet report DIR...``: experiment folders gathered into one Markdown page and one
self-contained HTML page (plots embedded), with a summary table of the verdicts first."""

from __future__ import annotations

import base64
import html
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import UserError
from .provenance import PROTOCOL
from .verdicts import fmt_any_interval, fmt_any_test

VERDICT_COLOURS = {
    "reproduced": "#1a7f37",
    "reproduced in direction, size differs": "#9a6700",
    "reproduced in direction, size censored": "#9a6700",
    "not significant": "#57606a",
    "not significant: excludes the paper's size": "#cf222e",
    "inconclusive: too small a test": "#57606a",
    "inconclusive: confounded": "#57606a",
    "inconclusive": "#57606a",
    "contradicted": "#cf222e",
}


def report_markdown(result: dict[str, Any], *, heading: str = "#", image_prefix: str = "") -> str:
    """One experiment's page: the claim, a table of paper against measurement, each claim's verdict
    with its test, the arms, plots."""
    r = result
    s = r["settings"]
    v = r["verdict"]
    lines = [
        f"{heading} {r['title']}",
        "",
        f"**Claim** ({r['section']}): {r['claim']}",
        "",
        "| quantity | paper | ours |",
        "| --- | --- | --- |",
        *[f"| {row['quantity']} | {row['paper']} | {row['ours']} |" for row in r["table"]],
        "",
        f"**Verdict: {v['status']}** ({v.get('figure', '')}) — {v['reason']}.",
        "",
    ]
    claims = v.get("claims") or []
    v2 = protocol_version(r) >= 2  # the first version's pages stay as they were written
    if claims:
        lines += [
            "| claim | figure | verdict | test | " + ("95% interval | " if v2 else "") + "effect / paper's |",
            "| --- | --- | --- | --- | " + ("--- | " if v2 else "") + "--- |",
        ]
        for c in claims:
            t = c.get("test") or {}
            ratio = t.get("ratio_to_paper")
            lines.append(
                f"| {c['claim']} | {c['figure']} | **{c['status']}** | {fmt_any_test(t)} | "
                + (f"{fmt_any_interval(t)} | " if v2 else "")
                + f"{'—' if ratio is None else f'{ratio:.2f}x'} |"
            )
        lines.append("")
    arms = r.get("arms") or []
    if arms:
        lines += ["| arm | model | options | parameters |", "| --- | --- | --- | --- |"]
        lines += [f"| {a['name']} | {a['model']} | {_options_text(a['options'])} | {a['parameters']:,} |" for a in arms]
        lines.append("")
    lines += [f"- {n}" for n in r.get("notes", [])]
    if r.get("notes"):
        lines.append("")
    lines += [f"![{Path(p).stem}]({image_prefix}{p})" for p in r["plots"]]
    m = r["machine"]
    proto = r.get("protocol") or {}
    pw = r.get("power")
    if pw:
        lines += [
            "",
            f"Power (protocol): with {pw['seeds']} seeds the one-sided paired t-test detects the paper's "
            f"effect ({pw['paper_effect'] * 100:.2g} pts, pilot SD {pw['pilot_sd'] * 100:.2g} pts: "
            f"{pw['pilot']}) with probability {pw['power']:.2f}; 80% needs {pw['seeds_for_80_percent']} "
            f"seeds; these seeds detect {pw['detectable_at_80_percent'] * 100:.2g} pts with 80%.",
        ]
    for pilot in r.get("pilots") or []:
        if pilot.get("skipped"):
            lines += ["", f"Pilot: skipped (--no-pilot), lr {pilot['chosen_lr']:g} untried: not the protocol's run."]
            continue
        tried = "; ".join(
            f"lr {t['lr']:g}: " + (", ".join(t["failures"]) or "every arm trains") for t in pilot["tried"]
        )
        lines += ["", f"Pilot (seed {pilot['seed']}, discarded): {tried}."]
    prov = r.get("provenance")
    if prov:
        lines += [
            "",
            f"Provenance: code {str(prov.get('commit'))[:10]} ({'clean' if prov.get('clean') else 'not clean'}),"
            f" training code {str(prov.get('training_code'))[:12]}, {prov.get('cpu_hours', 0):.2f} CPU hours "
            f"over {len(r['runs'])} reported runs and {prov.get('other_runs', 0)} others; runs trained "
            f"{prov.get('first_started')} to {prov.get('last_finished')}.",
        ]
    lines += [
        "",
        f"Protocol: `{proto.get('path', PROTOCOL)}`"
        + (f" version {proto['version']}" if v2 else "")
        + f", section `{r['experiment']}`"
        + (f" (commit {proto['commit'][:10]})" if proto.get("commit") else "")
        + ".  ",
        f"Command: `{r['command']}`  ",
        f"Seeds {len(s['seeds'])}, {s['epochs']} epochs per run, training images: "
        f"{s['train_images'] or 'all'}; {len(r['runs'])} runs, {r['train_seconds'] / 60:.1f} min of training "
        f"on {m['cpu']} ({m['torch_threads']} threads{', ' + m['gpu'] if m.get('gpu') else ''}); "
        f"torch {r['versions']['torch']}, alexnet {r['versions']['alexnet']}, finished {r['finished']}.",
        "",
    ]
    return "\n".join(lines)


def protocol_version(result: dict[str, Any]) -> int:
    """The protocol version a result was judged under (the first version's results record none)."""
    return int((result.get("protocol") or {}).get("version") or 1)


def _options_text(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items() if k != "in_chans") or "—"


def load_results(dirs: Sequence[str | os.PathLike[str]]) -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for d in dirs:
        p = Path(d)
        f = p / "result.json" if p.is_dir() else p
        if not f.is_file():
            raise UserError(f"{d}: no result.json (run `alexnet experiment NAME --out {d}` first)")
        try:
            out.append((f.parent, json.loads(f.read_text())))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{f}: not a result file ({e})") from None
        for key in ("experiment", "title", "table", "verdict", "plots", "settings", "machine", "versions"):
            if key not in out[-1][1]:
                raise UserError(f"{f}: not an experiment result (no {key!r})")
    if not out:
        raise UserError("report: give at least one experiment folder")
    return out


def _headline(result: dict[str, Any]) -> str:
    """The figure the verdict rests on, for the summary row (the verdict's own, never another row's)."""
    return result["verdict"].get("figure") or ""


def _claimed(result: dict[str, Any]) -> str:
    """The paper's side of the primary claim: its claims table row, else the last row with a paper figure."""
    claims = result["verdict"].get("claims") or []
    if claims and claims[0].get("paper"):
        return claims[0]["paper"]
    return next((row["paper"] for row in reversed(result["table"]) if row["paper"] not in ("—", "")), "")


def write_report(dirs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``out`` (.md) and the same name with .html; returns both paths."""
    results = load_results(dirs)
    md_path = Path(out)
    if md_path.suffix != ".md":
        md_path = md_path.with_suffix(".md")
    md_path.parent.mkdir(parents=True, exist_ok=True)
    html_path = md_path.with_suffix(".html")
    base = md_path.parent.resolve()

    lines = [
        "# AlexNet (2012): the paper's claims, measured",
        "",
        f"Every verdict follows the protocol in `{PROTOCOL}`, committed before the runs.",
        "",
        "| experiment | paper's claim | ours (the verdict's figure) | verdict | test |",
        "| --- | --- | --- | --- | --- |",
    ]
    for _, r in results:
        test = (r["verdict"].get("claims") or [{}])[0].get("test") or {}
        lines.append(
            f"| [{r['experiment']}](#{_anchor(r['title'])}) | {_claimed(r)} | {_headline(r)} | "
            f"**{r['verdict']['status']}** | {fmt_any_test(test)} |"
        )
    lines.append("")
    for folder, r in results:
        prefix = os.path.relpath(folder.resolve(), base).replace(os.sep, "/") + "/"
        lines.append(report_markdown(r, heading="##", image_prefix="" if prefix == "./" else prefix))
    md_path.write_text("\n".join(lines))
    html_path.write_text(_html(results))
    return md_path, html_path


def _anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9 -]", "", title.lower()).strip().replace(" ", "-")


def _img(path: Path) -> str:
    if not path.is_file():
        return f"<p><em>missing plot: {html.escape(str(path))}</em></p>"
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _code(text: str) -> str:
    """Markdown's `code` spans as <code>, the rest escaped."""
    parts = text.split("`")
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))


def _html(results: list[tuple[Path, dict[str, Any]]]) -> str:
    e = html.escape
    out = [
        "<!doctype html><html><head><meta charset='utf-8'><title>AlexNet: the paper's claims, measured</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;"
        "vertical-align:top}th{background:#f4f4f4}img{max-width:100%;margin:0.5em 0}code{background:#f4f4f4;"
        "padding:1px 4px}.v{font-weight:bold}.small{color:#555;font-size:0.9em}</style></head><body>",
        "<h1>AlexNet (2012): the paper's claims, measured</h1>",
        f"<p>Every verdict follows the protocol in <code>{e(PROTOCOL)}</code>, committed before the runs.</p>",
        "<table><tr><th>experiment</th><th>paper's claim</th><th>ours (the verdict's figure)</th><th>verdict</th>"
        "<th>test</th></tr>",
    ]
    for _, r in results:
        status = r["verdict"]["status"]
        test = (r["verdict"].get("claims") or [{}])[0].get("test") or {}
        out.append(
            f"<tr><td><a href='#{_anchor(r['title'])}'>{e(r['experiment'])}</a></td><td>{e(_claimed(r))}</td>"
            f"<td>{e(_headline(r))}</td><td class='v' style='color:{VERDICT_COLOURS.get(status, '#222')}'>"
            f"{e(status)}</td><td>{e(fmt_any_test(test))}</td></tr>"
        )
    out.append("</table>")
    for folder, r in results:
        status = r["verdict"]["status"]
        s, m = r["settings"], r["machine"]
        out += [
            f"<h2 id='{_anchor(r['title'])}'>{e(r['title'])}</h2>",
            f"<p><b>Claim</b> ({e(r['section'])}): {e(r['claim'])}</p>",
            "<table><tr><th>quantity</th><th>paper</th><th>ours</th></tr>",
            *[
                f"<tr><td>{e(row['quantity'])}</td><td>{e(row['paper'])}</td><td>{e(row['ours'])}</td></tr>"
                for row in r["table"]
            ],
            "</table>",
            f"<p class='v' style='color:{VERDICT_COLOURS.get(status, '#222')}'>Verdict: {e(status)} "
            f"({e(r['verdict'].get('figure', ''))})</p><p>{e(r['verdict']['reason'])}.</p>",
        ]
        claims = r["verdict"].get("claims") or []
        if claims:
            out.append(
                "<table><tr><th>claim</th><th>figure</th><th>verdict</th><th>test</th></tr>"
                + "".join(
                    f"<tr><td>{e(c['claim'])}</td><td>{e(c['figure'])}</td><td>{e(c['status'])}</td>"
                    f"<td>{e(fmt_any_test(c.get('test') or {}))}</td></tr>"
                    for c in claims
                )
                + "</table>"
            )
        if r.get("arms"):
            out.append(
                "<table><tr><th>arm</th><th>model</th><th>options</th><th>parameters</th></tr>"
                + "".join(
                    f"<tr><td>{e(a['name'])}</td><td>{e(a['model'])}</td><td>{e(_options_text(a['options']))}</td>"
                    f"<td>{a['parameters']:,}</td></tr>"
                    for a in r["arms"]
                )
                + "</table>"
            )
        if r.get("notes"):
            out.append("<ul>" + "".join(f"<li>{e(n)}</li>" for n in r["notes"]) + "</ul>")
        out += [_img(folder / p) for p in r["plots"]]
        out.append(
            f"<p class='small'>Command: {_code('`' + r['command'] + '`')}<br>{len(s['seeds'])} seed(s), "
            f"{s['epochs']} epochs per run, training images: {e(str(s['train_images'] or 'all'))}; "
            f"{len(r['runs'])} runs, {r['train_seconds'] / 60:.1f} min of training on {e(m['cpu'])} "
            f"({m['torch_threads']} threads); torch {e(r['versions']['torch'])}; finished "
            f"{e(r.get('finished', ''))}.</p>"
        )
    out.append("</body></html>")
    return "\n".join(out)
