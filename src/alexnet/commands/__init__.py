"""One module per command of the ``alexnet`` tool: each has ``add_parser(subparsers)`` and ``run(args)``.

``cli.py`` builds the parser from them in the order of ``COMMANDS``. A command module imports only
the standard library, ``config`` and ``errors`` at the top (so ``alexnet --help`` and
``alexnet predict --onnx`` never import torch); what it runs is imported when it runs.
"""

COMMANDS = [
    "models",
    "train",
    "evaluate",
    "predict",
    "prepare",
    "bench",
    "weights",
    "export",
    "serve",
    "features",
    "demo",
    "experiment",
    "report",
    "visualize",
    "neighbors",
]
