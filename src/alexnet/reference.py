"""The configuration reference, generated: every ``TrainConfig`` field (a recipe key and a flag of
``alexnet train``) with its type, default and help, and every ``ALEXNET_*`` environment variable.
``docs/config.md`` is this module's output (a test holds it to it)::

    python -m alexnet.reference > docs/config.md
"""

from __future__ import annotations

import dataclasses
import typing

from .config import TrainConfig
from .settings import VARIABLES


def _type_name(hint: object) -> str:
    text = str(hint).replace("typing.", "")
    return getattr(hint, "__name__", text) if not typing.get_args(hint) else text


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        if f.default is None:
            return "none"
        if isinstance(f.default, bool):  # as a recipe writes it (TOML)
            return f"`{str(f.default).lower()}`"
        return f"`{f.default!r}`".replace("'", '"')
    value = f.default_factory()  # type: ignore[misc,operator]
    return "`{}`" if value == {} else f"`{[round(v, 4) if isinstance(v, float) else v for v in value]}`"


def config_reference() -> str:
    hints = typing.get_type_hints(TrainConfig)
    lines = [
        "# Configuration reference",
        "",
        "Generated from `TrainConfig` (`src/alexnet/config.py`) by `python -m alexnet.reference > docs/config.md`;",
        "a test holds this page to it. Every key is a recipe key (TOML) and a flag of `alexnet train`",
        "(`model_options` is a table of the model's builder options, `--model-opt KEY=VALUE`). Values come from",
        "these defaults, then the recipe (`--recipe`), then the flags.",
        "",
        "| key | flag | type | default | what it does |",
        "| --- | --- | --- | --- | --- |",
    ]
    for f in dataclasses.fields(TrainConfig):
        flag = "`--model-opt KEY=VALUE`" if f.name == "model_options" else f"`--{f.name.replace('_', '-')}`"
        help_text = f.metadata.get("help", "").replace("|", "\\|")
        lines.append(f"| `{f.name}` | {flag} | {_type_name(hints[f.name])} | {_default(f)} | {help_text} |")
    lines += [
        "",
        "## Environment variables",
        "",
        "Read in one place, `src/alexnet/settings.py`.",
        "",
        "| variable | what it does |",
        "| --- | --- |",
        *[f"| `{name}` | {what} |" for name, what in VARIABLES.items()],
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(config_reference(), end="")
