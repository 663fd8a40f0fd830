"""The benchmarks' one way of publishing a table: print it and append it to a results file."""

from __future__ import annotations

from pathlib import Path


def append_results(out: str | Path, lines: list[str]) -> None:
    text = "\n".join(lines) + "\n\n"
    print(text)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a") as f:
        f.write(text)
