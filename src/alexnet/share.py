"""Trained weights in and out: torchvision's ImageNet AlexNet as a run folder, a run exported in the
Hugging Face Hub's layout for image classifiers, and features from any hidden layer.

    alexnet weights torchvision --out runs/alexnet-tv [--file alexnet-owt-7be5be79.pth]
    alexnet export RUN --format safetensors [--out DIR]
    alexnet features RUN --data SPEC | IMAGE... --layer fc7 --out feats.npz

An export folder holds ``model.safetensors`` (the state dict, plus the per-pixel mean image when the
run has one), ``config.json`` (model name and options, classes, eval transform, metrics, provenance)
and a model card ``README.md``; ``alexnet.load`` and every command that takes a run take it too.
Nothing here unpickles: safetensors holds tensors only, config.json is JSON.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from . import __version__
from .checkpoint import load_checkpoint, save_checkpoint
from .data.transforms import EvalTransform
from .errors import CheckFailed, UserError

EXPORT_FORMAT = "alexnet-export"
MEAN_IMAGE_KEY = "__eval_transform__.mean_image"


def is_export(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "config.json").is_file() and (p / "model.safetensors").is_file()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------ torchvision


def torchvision_weights(out: str | os.PathLike[str], file: str | None = None) -> Path:
    """A run folder (``best.pt``) for ``alexnet_tv`` with torchvision's ``AlexNet_Weights.IMAGENET1K_V1``:
    from ``file`` (a state dict saved by torchvision), else through torchvision's weights API (the
    torch hub cache; a download when it is not there). The classes are the 1000 ImageNet names, the
    eval transform that of those weights: shorter side 256, centre 224, ImageNet mean and std."""
    from torchvision.models import AlexNet_Weights

    from .models import create_model
    from .train import IMAGENET_MEAN, IMAGENET_STD

    weights = AlexNet_Weights.IMAGENET1K_V1
    outp = Path(out)
    if outp.exists() and any(outp.iterdir()):
        raise UserError(f"--out {outp}: already holds files; choose a new or empty folder")
    if file:
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise UserError(f"--file {file}: no such file") from None
        except Exception as e:
            raise UserError(f"--file {file}: not a readable state dict ({type(e).__name__}); it was not loaded") from None
        source = {"file": str(Path(file).resolve()), "sha256": file_sha256(Path(file))}
    else:
        try:
            state = weights.get_state_dict(progress=True, check_hash=True)
        except Exception as e:  # offline, or a server error
            raise UserError(f"torchvision's AlexNet weights could not be fetched ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:120] if str(e) else ''}); download {weights.url} elsewhere "
                            "and pass --file PATH") from None
        source = {"url": weights.url}
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    model = create_model("alexnet_tv", num_classes=1000)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise UserError(f"--file {file}: not torchvision's AlexNet state dict ({str(e).splitlines()[0][:160]})") from None
    classes = list(weights.meta["categories"])
    transform = EvalTransform(256, 224, 0, 3, IMAGENET_MEAN, IMAGENET_STD)
    metrics = {"val_top1_error": 1 - weights.meta["_metrics"]["ImageNet-1K"]["acc@1"] / 100,
               "val_top5_error": 1 - weights.meta["_metrics"]["ImageNet-1K"]["acc@5"] / 100,
               "source": "torchvision's published figures (single centre crop, ImageNet val)"}
    ck = {
        "model": model.state_dict(), "model_name": "alexnet_tv", "model_options": {}, "num_classes": 1000,
        "classes": classes, "class_names": classes, "eval_transform": transform.to_dict(),
        "config": {"model": "alexnet_tv", "data": "imagenet (torchvision's training)", "weights": source},
        "environment": {"alexnet": __version__, "torch": str(torch.__version__)}, "epoch": 90, "metrics": metrics,
    }
    outp.mkdir(parents=True, exist_ok=True)
    save_checkpoint(ck, outp / "best.pt")
    (outp / "classes.txt").write_text("\n".join(classes) + "\n")
    return outp


# ------------------------------------------------------------------------------------------ export


def export_safetensors(run: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> Path:
    """``RUN`` (a run folder's best.pt, or a checkpoint) as ``model.safetensors`` + ``config.json`` +
    ``README.md`` in ``out`` (default: RUN/export)."""
    from safetensors.torch import save_file

    from .checkpoint import resolve_checkpoint

    src = resolve_checkpoint(run)
    ck = load_checkpoint(src)
    outp = Path(out) if out else (src.parent / "export")
    if outp.exists() and any(outp.iterdir()):
        raise UserError(f"--out {outp}: already holds files; choose a new or empty folder")
    transform = dict(ck["eval_transform"])
    tensors = {k: v.detach().contiguous().cpu() for k, v in ck["model"].items()}
    mean_image = transform.pop("mean_image", None)
    if isinstance(mean_image, torch.Tensor):
        tensors[MEAN_IMAGE_KEY] = mean_image.float().contiguous()
    config = {
        "format": EXPORT_FORMAT, "format_version": 1,
        "model_name": ck["model_name"], "model_options": ck.get("model_options", {}),
        "num_classes": int(ck["num_classes"]), "classes": list(ck["classes"]),
        "class_names": list(ck.get("class_names") or ck["classes"]),
        "eval_transform": {**transform, "mean_image": MEAN_IMAGE_KEY if mean_image is not None else None},
        "metrics": {k: v for k, v in (ck.get("metrics") or {}).items() if isinstance(v, (int, float, str))},
        "provenance": {"checkpoint": str(src), "checkpoint_sha256": file_sha256(src), "epoch": ck.get("epoch"),
                       "config": ck.get("config", {}), "environment": ck.get("environment", {}),
                       "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "alexnet": __version__},
    }
    outp.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(outp / "model.safetensors"), metadata={"format": "pt", "model_name": ck["model_name"]})
    (outp / "config.json").write_text(json.dumps(config, indent=1, default=str) + "\n")
    (outp / "README.md").write_text(model_card(config))
    return outp


class _OnnxGraph(nn.Module):
    """What the ONNX file computes: decoded uint8 squares in, probabilities and logits out, with the
    evaluation transform (``eval_batch``: mean image, centre crop, padding, mean and std) traced into
    the graph, so that a user of the file needs only to decode, resize and take the central square."""

    def __init__(self, model: nn.Module, t: EvalTransform) -> None:
        super().__init__()
        self.model, self.transform = model, t

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from .data.transforms import eval_batch

        logits = self.model(eval_batch(image, self.transform)).float()
        return torch.softmax(logits, dim=1), logits


def _onnx_metadata(clf: Any, src: Path) -> dict[str, str]:
    from .onnx_runtime import INPUT, ONNX_FORMAT

    t = clf.transform.to_dict()
    t["mean_image"] = "inside the graph" if clf.transform.mean_image is not None else None
    ck = clf.checkpoint
    meta: dict[str, Any] = {
        "model_name": clf.name, "model_options": ck.get("model_options", {}), "classes": clf.classes,
        "class_names": clf.labels, "eval_transform": t,
        "preprocessing": (f"input '{INPUT}': uint8 (N, {t['channels']}, {t['image_size']}, {t['image_size']}), "
                          f"{'RGB' if t['channels'] == 3 else 'grey'}, the shorter side resized to {t['image_size']} "
                          "(antialiased bilinear) and the central square kept; the graph subtracts the mean image, "
                          f"takes the central {t['crop_size']} crop, pads {t['pad']}, and applies (x - mean) / std"),
        "metrics": {k: v for k, v in (ck.get("metrics") or {}).items() if isinstance(v, (int, float, str))},
        "provenance": {"source": str(src), "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "alexnet": __version__,
                       "torch": torch.__version__},
    }
    return {"format": ONNX_FORMAT, **{k: json.dumps(v, default=str) for k, v in meta.items()}}


def export_onnx(run: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, *,
                check_batch: int = 4, tolerance: float = 1e-4, seed: int = 0) -> dict[str, Any]:
    """``RUN`` (a run folder, checkpoint or export folder) as ONNX (``torch.onnx.export(dynamo=True)``,
    a dynamic batch dimension), checked against ONNX Runtime: the probabilities of ``check_batch``
    random images (and of one, for the dynamic batch) must agree with torch's ``predict`` path to
    ``tolerance``. Written atomically to ``out`` (default: the run's folder/model.onnx); a failed
    check leaves no file. Returns the path, the max abs difference and the timings."""
    import warnings

    import numpy as np

    from .checkpoint import resolve_checkpoint
    from .data.transforms import eval_batch
    from .onnx_runtime import INPUT, OUTPUTS, OnnxClassifier, _runtime
    from .predict import Classifier

    _runtime()  # onnxruntime missing: say so before the export's minute of work
    if importlib.util.find_spec("onnxscript") is None:  # torch.onnx's dynamo exporter needs it (and onnx)
        raise UserError('ONNX export needs onnx and onnxscript: pip install -e ".[export]"')
    src = resolve_checkpoint(run)
    clf = Classifier.from_checkpoint(run, device="cpu")
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
            program = torch.onnx.export(graph, (example,), dynamo=True, input_names=[INPUT], output_names=list(OUTPUTS),
                                        dynamic_shapes={"image": {0: torch.export.Dim("batch")}}, verbose=False)
        except Exception as e:
            raise UserError(f"{src}: ONNX export of {clf.name} failed ({type(e).__name__}: "
                            f"{str(e).strip().splitlines()[0][:200]})") from None
    export_s = time.perf_counter() - t0
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
            raise CheckFailed(f"{src}: the ONNX export of {clf.name} disagrees with torch by {worst:.2e} "
                              f"(more than {tolerance:g}); no file written")
        os.replace(tmp, outp)
    except OSError as e:
        raise UserError(f"--out {outp}: cannot write ({e.strerror or e})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return {"path": outp, "model": clf.name, "max_abs_diff": worst, "export_s": export_s,
            "bytes": outp.stat().st_size, "classes": len(clf.classes)}


def model_card(config: dict[str, Any]) -> str:
    """A model card in the Hub's layout for image classifiers (YAML front matter, then prose)."""
    m = config.get("metrics", {})
    err = [f"- {k.replace('val_', '').replace('_', ' ')} {100 * m[k]:.2f}%" for k in
           ("val_top1_error", "val_top5_error", "val10_top1_error") if isinstance(m.get(k), float) and m[k] == m[k]]
    err = err or ["- no validation figures recorded"]
    t = config["eval_transform"]
    return "\n".join([
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
        "clf = alexnet.load(\"PATH_OR_hf-hub:ORG/NAME\")",
        "clf.predict([\"photo.jpg\"], top_k=5)",
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
    ])


def load_export(path: str | os.PathLike[str]) -> dict[str, Any]:
    """An export folder as a checkpoint-like dict (``model``, ``model_name``, ..., ``eval_transform``)."""
    from safetensors.torch import load_file

    p = Path(path)
    try:
        config = json.loads((p / "config.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{p}/config.json: not readable ({e})") from None
    if config.get("format") != EXPORT_FORMAT:
        raise UserError(f"{p}: config.json is not an {EXPORT_FORMAT} file")
    try:
        tensors = load_file(str(p / "model.safetensors"))
    except Exception as e:
        raise UserError(f"{p}/model.safetensors: not readable ({str(e).splitlines()[0][:160]})") from None
    transform = dict(config["eval_transform"])
    key = transform.get("mean_image")
    transform["mean_image"] = tensors.pop(key) if key else None
    return {"model": tensors, "model_name": config["model_name"], "model_options": config.get("model_options", {}),
            "num_classes": config["num_classes"], "classes": config["classes"],
            "class_names": config.get("class_names"), "eval_transform": transform,
            "metrics": config.get("metrics", {}), "config": config.get("provenance", {}).get("config", {})}


def resolve_hub(path: str) -> str:
    """``hf-hub:ORG/NAME`` to a local folder through huggingface_hub (its cache; a download when online)."""
    if not path.startswith("hf-hub:"):
        return path
    repo = path[len("hf-hub:"):]
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise UserError(f"{path}: needs huggingface_hub (pip install -e \".[export]\")") from None
    try:
        return snapshot_download(repo_id=repo, allow_patterns=["config.json", "model.safetensors", "README.md"])
    except Exception as e:
        raise UserError(f"{path}: could not be fetched ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})") from None


# ------------------------------------------------------------------------------------------ features

# the module whose output is each named layer's feature (after its ReLU), per model
FEATURE_LAYERS = {
    "alexnet": {"pool5": "avgpool", "fc6": "classifier.act6", "fc7": "classifier.act7"},
    "alexnet_tv": {"pool5": "avgpool", "fc6": "classifier.2", "fc7": "classifier.5"},
}


def feature_layers(model_name: str) -> list[str]:
    return list(FEATURE_LAYERS.get(model_name, {})) + ["last"]


def feature_layer(model_name: str, layer: str | None) -> str:
    """``layer`` checked against the model's (None: fc7 where the model has it, else ``last``)."""
    names = feature_layers(model_name)
    layer = layer or ("fc7" if "fc7" in names else "last")
    if layer not in names:
        raise UserError(f"--layer {layer}: {model_name} has no such layer; it has {', '.join(names)}")
    return layer


@torch.no_grad()
def extract(model: nn.Module, model_name: str, x: torch.Tensor, layer: str) -> torch.Tensor:
    """(N, D) features of network inputs ``x`` at ``layer`` (``last``: the input of the output layer)."""
    layer = feature_layer(model_name, layer)
    if layer == "last":
        from .visualize import features

        return features(model, x).flatten(1).float()
    module = dict(model.named_modules())[FEATURE_LAYERS[model_name][layer]]
    got: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda m, i, o: got.append(o.detach().flatten(1).float().clone()))
    try:
        model(x)
    finally:
        handle.remove()
    return got[0]


def extract_features(run: str, *, layer: str | None = None, data: str | None = None, images: Iterable[str] = (),
                     batch_size: int = 64, device: str = "auto", progress: bool = True,
                     max_images: int | None = None) -> dict[str, Any]:
    """Features of a dataset's images (``data``: its training split) or of image files, batched, with a
    progress bar: ``{"features": (N, D) float32, "labels": (N,) int (-1 for files), "paths": [...]}``.
    ``layer`` None: fc7 where the model has it, else ``last`` (the input of the output layer)."""
    import numpy as np
    from tqdm import tqdm

    from .data.datasets import load_dataset, subset
    from .data.loader import BatchLoader
    from .data.transforms import eval_batch
    from .predict import load

    clf = load(run, device)
    layer = feature_layer(clf.name, layer)  # before the work
    t = clf.transform
    feats: list[torch.Tensor] = []
    labels: list[int] = []
    paths: list[str] = []
    errors: list[tuple[str, str]] = []
    if data:
        ds = subset(load_dataset(data, "train", image_size=t.image_size, channels=t.channels), max_images, 0)
        loader = BatchLoader(ds, batch_size, workers=2)
        for x, y in tqdm(loader, desc="features", unit="batch", disable=not progress or None, leave=False):
            feats.append(extract(clf.model, clf.name, eval_batch(x.to(clf.device), t), layer).cpu())
            labels += y.tolist()
        samples = getattr(ds, "samples", None)
        paths = [p for p, _ in samples] if samples else [f"{data}#{i}" for i in range(len(labels))]
    else:
        from .data.images import ImageError, load_image
        from .predict import expand_inputs

        files = list(expand_inputs(images))
        for k in tqdm(range(0, len(files), batch_size), desc="features", unit="batch", disable=not progress or None,
                      leave=False):
            batch, names = [], []
            for f in files[k:k + batch_size]:
                try:
                    batch.append(load_image(f, 3 if t.channels == 3 else 1, min_side=t.image_size))
                    names.append(f)
                except ImageError as e:
                    errors.append((f, str(e)))
            if batch:
                feats.append(extract(clf.model, clf.name, clf.preprocess(batch), layer).cpu())
                paths += names
        labels = [-1] * len(paths)
    f = torch.cat(feats) if feats else torch.empty(0, 0)
    return {"features": f.numpy().astype(np.float32), "labels": np.asarray(labels, dtype=np.int64),
            "paths": paths, "layer": layer, "model": clf.name, "errors": errors}
