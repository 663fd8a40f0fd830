"""ONNX export, offline: every registered model (the LRN, the spatial rnorm, cuda-convnet's pooling,
LeNet-5's RBF output and padding, AlexNet's 224 -> 55 first layer) exported with a dynamic batch and
checked against ONNX Runtime; ``predict --onnx`` answers as ``predict`` does, without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from alexnet.checkpoint import save_checkpoint  # noqa: E402
from alexnet.cli import main  # noqa: E402
from alexnet.data.transforms import EvalTransform, eval_batch  # noqa: E402
from alexnet.models import create_model, list_models, model_info  # noqa: E402

# every registered model with its defaults, and the options that change the graph
CASES = [(name, {}) for name in list_models()] + [
    ("alexnet", {"columns": 1, "width": 0.5, "top_width": 1.0}),  # §3.2's one-GPU net
    ("alexnet", {"lrn_across_columns": True, "pool": "nonoverlap", "width": 0.25}),
    ("cifar_18pct", {"lrn": "cross", "input_size": 24}),
    ("cifar_80sec", {"pool": "non-overlap"}),
    ("lenet5", {"variant": "modern"}),
]


def make_run(root: Path, name: str, options: dict, *, mean_image: bool = False, classes: int = 7) -> Path:
    """A run folder with a checkpoint of ``name`` whose outputs are far from uniform (so that the
    probabilities compared are not all ~1/classes)."""
    torch.manual_seed(0)
    info = model_info(name)
    model = create_model(name, num_classes=classes, **options).eval()
    size = options.get("input_size", info.input_size)
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if last:  # logits spread by ~4 across the classes
        with torch.no_grad():
            spread = float(model(torch.randn(4, info.in_chans, size, size)).std(1).mean())
            last[-1].weight.mul_(4.0 / spread)
            last[-1].bias.mul_(4.0 / spread)
    pad = 2 if name == "lenet5" else 0
    crop = size - 2 * pad
    image = max(crop, info.image_size if size == info.input_size else size + 4)
    mi = torch.rand(info.in_chans, image, image) * 60 + 100 if mean_image else None
    t = EvalTransform(image, crop, pad, info.in_chans, (120.0,) * info.in_chans, (60.0,) * info.in_chans, mi)
    cls = [f"class{i}" for i in range(classes)]
    run = root / f"{name}-{len(options)}"
    run.mkdir(parents=True)
    save_checkpoint(
        {
            "model": model.state_dict(),
            "model_name": name,
            "model_options": options,
            "num_classes": classes,
            "classes": cls,
            "class_names": [c.upper() for c in cls],
            "eval_transform": t.to_dict(),
            "metrics": {"val_top1_error": 0.25},
            "epoch": 1,
        },
        run / "best.pt",
    )
    return run


@pytest.mark.parametrize(
    "name,options", CASES, ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'default'}" for n, o in CASES]
)
def test_every_model_exports_and_onnx_runtime_agrees(name: str, options: dict, tmp_path: Path) -> None:
    import onnxruntime as ort

    from alexnet.export import export_onnx
    from alexnet.inference.classifier import load

    run = make_run(tmp_path, name, options, mean_image=name.startswith("cifar"))
    r = export_onnx(run)
    assert r["path"] == run / "model.onnx" and r["max_abs_diff"] <= 1e-4
    clf = load(run, device="cpu")
    t = clf.transform
    sess = ort.InferenceSession(str(r["path"]), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["image"] and [o.name for o in sess.get_outputs()] == [
        "probabilities",
        "logits",
    ]
    assert isinstance(sess.get_inputs()[0].shape[0], str)  # the batch dimension is symbolic
    for n in (3, 1, 9):  # batch sizes other than the one the export traced
        px = np.random.default_rng(n).integers(0, 256, (n, t.channels, t.image_size, t.image_size), dtype=np.uint8)
        probs, logits = sess.run(None, {"image": px})
        with torch.no_grad():
            ref = clf.model(eval_batch(torch.from_numpy(px), t)).float()
        assert probs.shape == (n, 7)
        assert np.abs(probs - torch.softmax(ref, 1).numpy()).max() <= 1e-4
        assert np.abs(logits - ref.numpy()).max() <= 1e-4 * max(1.0, float(ref.abs().max()))
        p = torch.softmax(ref, 1)
        assert float((p.max(1).values - p.min(1).values).min()) > 0.1  # far from a uniform guess
    meta = sess.get_modelmeta().custom_metadata_map
    assert meta["format"] == "alexnet-onnx" and json.loads(meta["model_name"]) == name
    assert json.loads(meta["eval_transform"])["crop_size"] == t.crop_size and "central square" in meta["preprocessing"]


def test_predict_onnx_answers_as_predict_does_without_torch(
    trained_run: Path, tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    onnx = tmp_path / "m.onnx"
    assert main(["export", str(trained_run), "--format", "onnx", "--out", str(onnx)]) == 0
    assert "ONNX Runtime agrees with torch" in capsys.readouterr().out
    images = str(tiny_folder / "val" / "red")
    assert main(["predict", str(trained_run), images, "--json", "--top-k", "3"]) == 0
    ref = json.loads(capsys.readouterr().out)["predictions"]
    # a fresh interpreter in which importing torch fails: the ONNX path must not need it
    code = (
        "import sys; sys.modules['torch'] = None; from alexnet.cli import main; "
        f"sys.exit(main(['predict', '--onnx', {str(onnx)!r}, {images!r}, '--json', '--top-k', '3']))"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)["predictions"]
    assert [g["path"] for g in got] == [r["path"] for r in ref] and len(got) == 20
    for g, r in zip(got, ref):
        assert [t["label"] for t in g["top"]] == [t["label"] for t in r["top"]]
        assert [t["prob"] for t in g["top"]] == pytest.approx([t["prob"] for t in r["top"]], abs=1e-4)


def test_onnx_mistakes_are_one_line_errors(
    trained_run: Path, tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = str(next((tiny_folder / "val" / "red").iterdir()))
    cases = [
        (["predict", "--onnx", str(tmp_path / "missing.onnx"), img], "missing.onnx: no such file"),
        (["predict", "--onnx", str(trained_run / "best.pt"), img], "not a readable ONNX model"),
        (["predict", "--onnx", str(tmp_path / "m.onnx")], "give the images"),
    ]
    # an ONNX file that is not one of ours
    plain = tmp_path / "plain.onnx"
    with torch.no_grad():
        torch.onnx.export(nn.Linear(3, 2).eval(), (torch.zeros(1, 3),), str(plain), dynamo=True)
    cases.append((["predict", "--onnx", str(plain), img], "not written by `alexnet export --format onnx`"))
    (tmp_path / "m.onnx").write_bytes(b"")
    cases.append(
        (["export", str(trained_run), "--format", "onnx", "--out", str(tmp_path / "m.onnx")], "already exists")
    )
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (argv, err)


def test_an_export_that_fails_its_check_writes_nothing_and_exits_3(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disagreement with torch is our bug, not the user's mistake: exit 3 (not 2), nothing written."""
    import alexnet.export as share

    real = share.export_onnx
    monkeypatch.setattr(share, "export_onnx", lambda *a, **k: real(*a, **{**k, "tolerance": -1.0}))
    out = tmp_path / "m.onnx"
    assert main(["export", str(trained_run), "--format", "onnx", "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert "disagrees with torch" in err and "please report it" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
