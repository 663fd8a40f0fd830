"""Data: datasets named by SPEC strings, robust image reading and batch-level transforms."""

from .datasets import DataSpec, FolderDataset, InMemoryDataset, collate, load_dataset
from .images import ImageError, load_image, resize_center_square
from .transforms import EvalTransform, TrainAugment, eval_batch

__all__ = [
    "DataSpec", "EvalTransform", "FolderDataset", "ImageError", "InMemoryDataset", "TrainAugment",
    "collate", "eval_batch", "load_dataset", "load_image", "resize_center_square",
]
