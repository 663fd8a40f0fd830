"""The ``alexnet`` command: the only place that reads ``sys.argv``. Each command lives in its own module
under ``commands/`` (its parser and its run); this module builds the parser from them and turns
errors into one line and an exit status.

    alexnet models [NAME]
    alexnet train --model NAME --data SPEC --out RUN [--recipe FILE] [--epochs N ...]
    alexnet evaluate RUN_OR_CKPT --data SPEC [--json]
    alexnet predict RUN_OR_CKPT IMAGE_OR_DIR... [--top-k 5] [--json]
    alexnet predict --onnx FILE IMAGE_OR_DIR...
    alexnet export RUN --format safetensors|onnx [--out PATH]
    alexnet serve RUN_OR_EXPORT [--host 127.0.0.1] [--port 8000] [--workers N] [--max-batch 32] [--onnx]
    alexnet prepare SRC DST [--size 256] [--workers N]
    alexnet demo
    alexnet experiment list | NAME --data SPEC --out DIR [--seeds K] [--epochs N]
    alexnet report DIR... [--out FILE.md]
    alexnet visualize kernels RUN [--out PNG]
    alexnet neighbors RUN --query IMAGE... --data SPEC [--k 6] [--out PNG]

Exit status: 0 done; 1 done in part; 2 a user mistake (one line ``alexnet: error: ...``); 3 a
self-check of ours failed; 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from .commands import COMMANDS
from .errors import CheckFailed, UserError, printable
from .version import __version__


class Parser(argparse.ArgumentParser):
    """argparse, with a mistake in the command line reported in one line (not the whole usage)."""

    def error(self, message: str) -> NoReturn:
        print(f"alexnet: error: {printable(message)} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="alexnet", description="AlexNet (2012) and LeNet-5, faithful to the papers.")
    p.add_argument("--version", action="version", version=f"alexnet {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:  # each module imports nothing heavy at the top: --help stays fast, torch-free
        importlib.import_module(f".commands.{name}", __package__).add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(argv)
    if extra:
        # files after an option (`predict RUN --top-k 3 a.jpg b.jpg`) are still the command's files
        takes_files = isinstance(getattr(args, "images", None), list)
        unknown = [a for a in extra if a.startswith("-")] if takes_files else extra
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        args.images += extra
    args.argv = argv
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"alexnet: error: {printable(e)}", file=sys.stderr)  # a name in it cannot forge a line
        return 2
    except CheckFailed as e:
        print(f"alexnet: error: {e} (a bug: please report it)", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("alexnet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`alexnet models | head -1`): what it wanted it got; no traceback, and
        # none at exit either, when Python flushes stdout into the closed pipe
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
