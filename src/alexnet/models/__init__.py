"""The networks: ``create_model(name, num_classes=..., **options)``, ``list_models()``.

Importing this package registers every network; each lives in its own file.
"""

from . import alexnet, alexnet_tv, cifar, lenet  # noqa: F401  (registration)
from ._registry import ModelInfo, create_model, list_models, model_info, register_model

__all__ = ["ModelInfo", "create_model", "list_models", "model_info", "register_model"]
