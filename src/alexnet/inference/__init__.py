"""Using a trained network: images in, top-k labels out.

``base`` (what a prediction is, which files are read; no torch), ``classifier`` (the torch
``Classifier`` of a run, ``load``, ``evaluate``), ``onnx`` (the same answers from an exported ONNX file
with ONNX Runtime; no torch), ``features`` (hidden-layer features). This package's ``__init__``
imports nothing, so ``alexnet predict --onnx`` never imports torch.
"""
