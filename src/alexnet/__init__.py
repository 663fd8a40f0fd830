"""AlexNet (Krizhevsky, Sutskever & Hinton, NIPS 2012) and LeNet-5 (LeCun et al. 1998), faithful
to the papers: networks, the paper's data pipeline, training, evaluation and prediction.

Usage::

    import alexnet
    model = alexnet.create_model("alexnet", num_classes=1000)
    cfg = alexnet.TrainConfig.from_recipe("lenet5_mnist", data="mnist:../shared/data", out="runs/lenet")
    alexnet.train(cfg)
    alexnet.evaluate("runs/lenet", "mnist:../shared/data").top1_error
    clf = alexnet.load("runs/lenet")
    clf.predict(["digit.png"], top_k=5)

The layers of the package, each importing only from those above it in this list:

    version, errors, files, runtime, distributed, config   the ground: no model, no data
    models/                                                one network per file, a registry
    data/                                                  images, transforms, datasets, the packed format
    checkpoint                                             the checkpoint schema, save and load
    engine/                                                the parts of training
    training                                               the loop
    inference/                                             a trained run as a classifier (torch or ONNX)
    export, weights, visualize                             runs out, published weights in, figures
    server/, demo, bench, experiments/, testing            what is built on all of that
    commands/, cli                                         the ``alexnet`` command

This module imports lazily: ``import alexnet`` does not import torch (the CLI's ``--help``,
``predict --onnx``). No submodule is named like a function served here (``train``, ``evaluate``,
``load``), so importing a submodule never replaces one of them.
"""

from .config import TrainConfig
from .errors import UserError
from .version import __version__

_LAZY = {
    "create_model": "models",
    "list_models": "models",
    "model_info": "models",
    "train": "training",
    "TrainResult": "training",
    "load": "inference.classifier",
    "evaluate": "inference.classifier",
    "Classifier": "inference.classifier",
    "Prediction": "inference.base",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Classifier",
    "Prediction",
    "TrainConfig",
    "TrainResult",
    "UserError",
    "__version__",
    "create_model",
    "evaluate",
    "list_models",
    "load",
    "model_info",
    "train",
]
