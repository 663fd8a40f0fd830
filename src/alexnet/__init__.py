"""AlexNet (Krizhevsky, Sutskever & Hinton, NIPS 2012) and LeNet-5 (LeCun et al. 1998), faithful
to the papers: networks, the paper's data pipeline, training, evaluation and prediction.

Usage::

    import alexnet
    model = alexnet.create_model("alexnet", num_classes=1000)
    cfg = alexnet.TrainConfig.from_recipe("lenet5_mnist", data="mnist:../shared/data", out="runs/lenet")
    alexnet.train(cfg)
    clf = alexnet.load("runs/lenet")
    clf.predict(["digit.png"], top_k=5)
"""

__version__ = "0.1.0"

from .config import TrainConfig  # noqa: E402
from .errors import UserError  # noqa: E402


def __getattr__(name: str):  # lazy: `import alexnet` does not import torch (the CLI's --help, predict --onnx)
    if name in ("create_model", "list_models", "model_info"):
        from . import models

        return getattr(models, name)
    if name == "train":
        from .train import train

        return train
    if name in ("load", "Classifier", "Prediction"):
        from . import predict

        return getattr(predict, name)
    if name == "evaluate":
        from .api import evaluate

        return evaluate
    raise AttributeError(name)


__all__ = ["TrainConfig", "UserError", "create_model", "list_models", "model_info", "train", "load", "evaluate"]
