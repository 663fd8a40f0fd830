"""ImageNet's class identities and names.

A class has an identity (the WordNet ID of its ILSVRC2012 synset, the folder name of an ImageNet
tree: ``n01440764``) and a display name (``tench``). ``imagenet_wnids.txt`` beside this file lists
the 1000 ILSVRC2012 synsets in the devkit's sorted order, which is the order of the outputs of every
ImageNet classifier trained on a folder tree, torchvision's included; torchvision's weights carry
the display names in that same order. Checkpoints store both: ``classes`` (identities, matched
against a dataset's folders) and ``class_names`` (what a prediction prints).
"""

from __future__ import annotations

import functools
from importlib import resources

from torchvision.models import AlexNet_Weights


@functools.cache
def imagenet_wnids() -> list[str]:
    """The 1000 ILSVRC2012 WNIDs in class-index order."""
    text = resources.files(__package__).joinpath("imagenet_wnids.txt").read_text()
    return text.split()


@functools.cache
def imagenet_names() -> list[str]:
    """The display names of the 1000 classes, in class-index order (torchvision's list)."""
    return list(AlexNet_Weights.IMAGENET1K_V1.meta["categories"])


def display_names(classes: list[str]) -> list[str]:
    """Each class's display name: the ImageNet name of a known WNID (any subset of the 1000, in any
    order), else the class as it is."""
    names = dict(zip(imagenet_wnids(), imagenet_names()))
    return [names.get(c, c) for c in classes]
