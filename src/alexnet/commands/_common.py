"""What several commands share: option values as TOML reads them, counts as 1.23M."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from .._toml import tomllib
from ..errors import UserError, printable


def fmt_count(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(int(n))


def literal(text: str) -> Any:
    """A flag value as TOML would read it (true, 3, 0.5, "x"); anything else is a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def list_literal(text: str) -> Any:
    """A list flag's value: TOML's ``[0.08, 1.0]``, or the same without brackets, ``0.08,1.0``."""
    value = literal(text)
    if isinstance(value, str) and not text.lstrip().startswith(("[", "{")):
        bracketed = literal(f"[{text}]")
        return bracketed if isinstance(bracketed, list) else value
    return value


def parse_options(items: Sequence[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--model-opt {item!r}: expected KEY=VALUE (e.g. --model-opt lrn=false)")
        out[key.strip()] = literal(value.strip())
    return out


def at_least(low: int) -> Any:
    """An argparse type: an integer of at least ``low`` (a bad value is the parser's one-line error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


shown = printable  # a file name as printed (errors.printable)
