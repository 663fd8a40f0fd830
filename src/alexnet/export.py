"""A trained run out: exported in the Hugging Face Hub's layout for image classifiers, or as one ONNX file.

    alexnet export RUN --format safetensors [--out DIR]
    alexnet export RUN --format onnx [--out FILE]

An export folder holds ``model.safetensors`` (the state dict, plus the per-pixel mean image when the
run has one), ``config.json`` (model name and options, classes, eval transform, metrics, provenance)
and a model card ``README.md``; ``alexnet.load`` and every command that takes a run take it too.
Nothing here unpickles: safetensors holds tensors only, config.json is JSON.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from .checkpoint import EXPORT_FORMAT, MEAN_IMAGE_KEY, load_checkpoint, resolve_checkpoint
from .data.transforms import EvalTransform, eval_batch
from .errors import CheckFailed, UserError
from .files import file_sha256, new_folder, staged_folder
from .inference.classifier import Classifier
from .inference.onnx import INPUT, ONNX_FORMAT, OUTPUTS, OnnxClassifier, onnxruntime_module
from .version import __version__


def _json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf) replaced by None, so that it is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def export_safetensors(
    run: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, *, ema: bool = False
) -> Path:
    """``RUN`` (a run folder's best.pt, or a checkpoint) as ``model.safetensors`` + ``config.json`` +
    ``README.md`` in ``out`` (default: RUN/export); ``ema``: the run's moving average of the weights
    (``--model-ema``) instead of the weights themselves (config.json's ``weights`` says which)."""
    src = resolve_checkpoint(run)
    ck = load_checkpoint(src, ema=ema)
    outp = Path(out) if out else (src.parent / "export")
    new_folder(outp)  # before the work
    transform = dict(ck["eval_transform"])
    tensors = {k: v.detach().contiguous().cpu() for k, v in ck["model"].items()}
    mean_image = transform.pop("mean_image", None)
    if isinstance(mean_image, torch.Tensor):
        tensors[MEAN_IMAGE_KEY] = mean_image.float().contiguous()
    config = {
        "format": EXPORT_FORMAT,
        "format_version": 1,
        "model_name": ck["model_name"],
        "model_options": ck.get("model_options", {}),
        "num_classes": int(ck["num_classes"]),
        "weights": ck["weights"],
        "classes": list(ck["classes"]),
        "class_names": list(ck.get("class_names") or ck["classes"]),
        "eval_transform": {**transform, "mean_image": MEAN_IMAGE_KEY if mean_image is not None else None},
        "metrics": {k: v for k, v in (ck.get("metrics") or {}).items() if isinstance(v, (int, float, str))},
        "provenance": {
            "checkpoint": str(src),
            "checkpoint_sha256": file_sha256(src),
            "epoch": ck.get("epoch"),
            "config": ck.get("config", {}),
            "environment": ck.get("environment", {}),
            "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "alexnet": __version__,
        },
    }
    with staged_folder(outp) as tmp:  # the folder appears whole, or not at all
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt", "model_name": ck["model_name"]})
        # strict JSON: a metric that was never measured (NaN) is null, not the bare NaN other parsers refuse
        (tmp / "config.json").write_text(json.dumps(_json_safe(config), indent=1, default=str, allow_nan=False) + "\n")
        (tmp / "README.md").write_text(model_card(config))
    return outp


class _OnnxGraph(nn.Module):
    """What the ONNX file computes: decoded uint8 squares in, probabilities and logits out, with the
    evaluation transform (``eval_batch``: mean image, centre crop, padding, mean and std) traced into
    the graph, so that a user of the file needs only to decode, resize and take the central square."""

    def __init__(self, model: nn.Module, t: EvalTransform) -> None:
        super().__init__()
        self.model, self.transform = model, t

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(eval_batch(image, self.transform)).float()
        return torch.softmax(logits, dim=1), logits


def _onnx_metadata(clf: Any, src: Path) -> dict[str, str]:
    t = clf.transform.to_dict()
    t["mean_image"] = "inside the graph" if clf.transform.mean_image is not None else None
    ck = clf.checkpoint
    meta: dict[str, Any] = {
        "model_name": clf.name,
        "model_options": ck.get("model_options", {}),
        "classes": clf.classes,
        "class_names": clf.labels,
        "eval_transform": t,
        "preprocessing": (
            f"input '{INPUT}': uint8 (N, {t['channels']}, {t['image_size']}, {t['image_size']}), "
            f"{'RGB' if t['channels'] == 3 else 'grey'}, the shorter side resized to {t['image_size']} "
            "(antialiased bilinear) and the central square kept; the graph subtracts the mean image, "
            f"takes the central {t['crop_size']} crop, pads {t['pad']}, and applies (x - mean) / std"
        ),
        "metrics": {k: v for k, v in (ck.get("metrics") or {}).items() if isinstance(v, (int, float, str))},
        "provenance": {
            "source": str(src),
            "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "alexnet": __version__,
            "torch": torch.__version__,
        },
    }
    return {
        "format": ONNX_FORMAT,
        **{k: json.dumps(_json_safe(v), default=str, allow_nan=False) for k, v in meta.items()},
    }


def export_onnx(
    run: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    check_batch: int = 4,
    tolerance: float = 1e-4,
    seed: int = 0,
    ema: bool = False,
) -> dict[str, Any]:
    """``RUN`` (a run folder, checkpoint or export folder) as ONNX (``torch.onnx.export(dynamo=True)``,
    a dynamic batch dimension), checked against ONNX Runtime: the probabilities of ``check_batch``
    random images (and of one, for the dynamic batch) must agree with torch's ``predict`` path to
    ``tolerance``. Written atomically to ``out`` (default: the run's folder/model.onnx); a failed
    check leaves no file. Returns the path, the max abs difference and the timings."""
    onnxruntime_module()  # onnxruntime missing: say so before the export's minute of work
    if importlib.util.find_spec("onnxscript") is None:  # torch.onnx's dynamo exporter needs it (and onnx)
        raise UserError('ONNX export needs onnx and onnxscript: pip install -e ".[export]"')
    src = resolve_checkpoint(run)
    clf = Classifier.from_checkpoint(run, device="cpu", ema=ema)
    outp = Path(out) if out else (src if src.is_dir() else src.parent) / "model.onnx"
    if outp.is_dir():
        raise UserError(f"--out {outp}: a folder; name the .onnx file to write")
    if outp.exists():
        raise UserError(f"--out {outp}: already exists; remove it or choose another name")
    t, graph = clf.transform, _OnnxGraph(clf.model, clf.transform).eval()
    example = torch.zeros(2, t.channels, t.image_size, t.image_size, dtype=torch.uint8)
    t0 = time.perf_counter()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracing chatter
        try:
            program = torch.onnx.export(
                graph,
                (example,),
                dynamo=True,
                input_names=[INPUT],
                output_names=list(OUTPUTS),
                dynamic_shapes={"image": {0: torch.export.Dim("batch")}},
                verbose=False,
            )
        except Exception as e:
            raise UserError(
                f"{src}: ONNX export of {clf.name} failed ({type(e).__name__}: {str(e).strip().splitlines()[0][:200]})"
            ) from None
    export_s = time.perf_counter() - t0
    if program is None:  # the dynamo exporter returns a program (None is the legacy exporter's)
        raise UserError(f"{src}: ONNX export of {clf.name} returned nothing")
    program.model.metadata_props.update(_onnx_metadata(clf, src))
    tmp = outp.with_name(f".{outp.name}.{os.getpid()}.tmp")
    try:
        outp.parent.mkdir(parents=True, exist_ok=True)
        program.save(str(tmp))
        ort_clf = OnnxClassifier(tmp, threads=None)
        rng = np.random.default_rng(seed)
        worst = 0.0
        for n in (check_batch, 1):  # two batch sizes: the batch dimension is dynamic
            pixels = rng.integers(0, 256, (n, t.channels, t.image_size, t.image_size), dtype=np.uint8)
            with torch.no_grad():
                ref = torch.softmax(clf.model(eval_batch(torch.from_numpy(pixels), t)).float(), 1).numpy()
            got = ort_clf.probabilities(pixels)
            worst = max(worst, float(np.abs(got - ref).max()))
        if not worst <= tolerance:
            raise CheckFailed(
                f"{src}: the ONNX export of {clf.name} disagrees with torch by {worst:.2e} "
                f"(more than {tolerance:g}); no file written"
            )
        os.replace(tmp, outp)
    except OSError as e:
        raise UserError(f"--out {outp}: cannot write ({e.strerror or e})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return {
        "path": outp,
        "model": clf.name,
        "max_abs_diff": worst,
        "export_s": export_s,
        "bytes": outp.stat().st_size,
        "classes": len(clf.classes),
    }


def model_card(config: dict[str, Any]) -> str:
    """A model card in the Hub's layout for image classifiers (YAML front matter, then prose)."""
    m = config.get("metrics", {})
    ema = config.get("weights") == "ema"  # the run's moving average of the weights, and its own figures
    keys: tuple[str, ...] = ("val_top1_error", "val_top5_error", "val10_top1_error")
    keys = tuple(f"ema_{k}" for k in keys[:2]) if ema else keys
    err = [
        f"- {k.replace('ema_', '').replace('val_', '').replace('_', ' ')} {100 * m[k]:.2f}%"
        for k in keys
        if isinstance(m.get(k), float) and m[k] == m[k]
    ]
    err = err or ["- no validation figures recorded"]
    if ema:
        err.insert(0, "The weights are the run's exponential moving average of its weights (`--model-ema`).\n")
    t = config["eval_transform"]
    return "\n".join(
        [
            "---",
            "library_name: alexnet",
            "pipeline_tag: image-classification",
            "tags:",
            "- image-classification",
            f"- {config['model_name']}",
            "license: mit",
            "---",
            "",
            f"# {config['model_name']}, {config['num_classes']} classes",
            "",
            "Exported with `alexnet export RUN --format safetensors` from the `alexnet` package (AlexNet, "
            "Krizhevsky, Sutskever & Hinton 2012, and LeNet-5, faithful to the papers).",
            "",
            "```python",
            "import alexnet",
            'clf = alexnet.load("PATH_OR_hf-hub:ORG/NAME")',
            'clf.predict(["photo.jpg"], top_k=5)',
            "```",
            "",
            "## Evaluation (from the run that produced it)",
            "",
            *err,
            "",
            "## Preprocessing",
            "",
            f"Shorter side resized to {t['image_size']}, central {t['image_size']}x{t['image_size']} square"
            + (", minus the per-pixel mean image" if t.get("mean_image") else "")
            + f", central {t['crop_size']}x{t['crop_size']} crop, (x - mean) / std with mean {t['mean']} and std "
            f"{t['std']} in 0-255 units.",
            "",
            f"Classes: {', '.join(config['class_names'][:10])}{', ...' if config['num_classes'] > 10 else ''}",
            "",
        ]
    )
