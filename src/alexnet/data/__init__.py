"""Data: datasets named by SPEC strings, robust image reading and batch-level transforms.

    images       reading any image Pillow can (no torch)
    transforms   batch transforms on uint8 tensors: crops, flips, PCA colour noise, normalisation
    base         the in-memory and on-the-fly dataset types
    imagenet     ImageNet class identities (WNIDs) and names
    packed/      the packed fast format: format, writer (``alexnet prepare``), reader
    datasets     a SPEC (mnist, cifar10, a folder or archive, a packed folder) to a dataset
    loader       batches, sharded over processes
    pipeline     background gathering and the copy to the device

This package's ``__init__`` imports nothing, so ``alexnet.data.images`` works without torch.
"""
