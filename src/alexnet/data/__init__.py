"""Data: datasets named by SPEC strings, robust image reading and batch-level transforms."""

import importlib

# lazy, so that ``alexnet.data.images`` (Pillow and numpy only) can be used without importing torch
_WHERE = {"DataSpec": "datasets", "FolderDataset": "datasets", "InMemoryDataset": "datasets", "collate": "datasets",
          "load_dataset": "datasets", "ImageError": "images", "load_image": "images",
          "resize_center_square": "images", "EvalTransform": "transforms", "TrainAugment": "transforms",
          "eval_batch": "transforms"}


def __getattr__(name: str) -> object:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DataSpec", "EvalTransform", "FolderDataset", "ImageError", "InMemoryDataset", "TrainAugment",
    "collate", "eval_batch", "load_dataset", "load_image", "resize_center_square",
]
