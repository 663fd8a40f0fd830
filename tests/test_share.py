"""Trained weights in and out, offline: torchvision's AlexNet from a state dict the test makes in its
layout, a run exported to safetensors and loaded back by every command, hf-hub: through a local
folder, and hidden-layer features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import alexnet
from alexnet.cli import main


@pytest.fixture(scope="module")
def tv_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from torchvision.models import alexnet as tv_alexnet

    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("tv") / "alexnet-owt.pth"
    torch.save(tv_alexnet(weights=None).state_dict(), p)
    return p


def test_weights_torchvision_from_a_file_makes_a_run_that_predicts(
    tv_state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from torchvision.models import alexnet as tv_alexnet

    assert main(["weights", "torchvision", "--out", str(tmp_path / "tv"), "--file", str(tv_state)]) == 0
    clf = alexnet.load(tmp_path / "tv")
    assert clf.name == "alexnet_tv" and len(clf.classes) == 1000 and clf.labels[:2] == ["tench", "goldfish"]
    t = clf.transform
    assert (t.image_size, t.crop_size) == (256, 224)
    assert t.mean == pytest.approx((0.485 * 255, 0.456 * 255, 0.406 * 255))
    # the same outputs as torchvision's model with torchvision's own preprocessing
    ref = tv_alexnet(weights=None).eval()
    ref.load_state_dict(torch.load(tv_state, weights_only=True))
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8))
    from torchvision.models import AlexNet_Weights

    x_tv = AlexNet_Weights.IMAGENET1K_V1.transforms()(img)[None]
    with torch.no_grad():
        p_ref = torch.softmax(ref(x_tv), 1)[0]
    p_ours = torch.tensor(clf.predict([img], top_k=1000)[0].probs)
    idx = torch.tensor(clf.predict([img], top_k=1000)[0].indices)
    assert torch.allclose(p_ours, p_ref[idx], atol=2e-3)  # resize implementations differ by a little
    capsys.readouterr()
    assert main(["weights", "torchvision", "--out", str(tmp_path / "tv"), "--file", str(tv_state)]) == 2  # not over
    assert "already holds files" in capsys.readouterr().err
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, bad)
    assert main(["weights", "torchvision", "--out", str(tmp_path / "b"), "--file", str(bad)]) == 2
    assert "not torchvision's AlexNet state dict" in capsys.readouterr().err


def test_a_torchvision_weights_run_evaluates_on_a_prepared_wnid_tree(
    tv_state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The run's classes are WNIDs (identities) with names for display, so `evaluate` takes a prepared
    ImageNet folder: all 1000 classes or, as here, a subset whose labels are the model's own indices."""
    from alexnet.data.imagenet import imagenet_wnids

    assert main(["weights", "torchvision", "--out", str(tmp_path / "tv"), "--file", str(tv_state)]) == 0
    ck = torch.load(tmp_path / "tv" / "best.pt", weights_only=True)
    assert ck["classes"] == imagenet_wnids() and ck["class_names"][:2] == ["tench", "goldfish"]
    assert (tmp_path / "tv" / "classes.txt").read_text().splitlines()[0] == "n01440764 tench"
    wnids = ["n01443537", "n01484850", "n15075141"]  # goldfish, great white shark, toilet tissue
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for w in wnids:
            d = tmp_path / "imagenet" / split / w
            d.mkdir(parents=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(d / f"{i}.JPEG")
    assert main(["prepare", str(tmp_path / "imagenet"), str(tmp_path / "in256"), "--workers", "1"]) == 0
    meta = json.loads((tmp_path / "in256" / "dataset.json").read_text())
    assert meta["class_names"] == ["goldfish", "great white shark", "toilet tissue"]  # a subset is named too
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "tv"), "--data", str(tmp_path / "in256"), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n"] == 6
    rows = torch.tensor(r["confusion_matrix"]).sum(1)  # images per true class, in the model's 1000 indices
    assert rows.nonzero().flatten().tolist() == [imagenet_wnids().index(w) for w in wnids] == [1, 2, 999]
    assert rows[[1, 2, 999]].tolist() == [2, 2, 2]
    # a class the model does not know is one line naming it
    (tmp_path / "imagenet" / "val" / "n00000000").mkdir()
    (tmp_path / "imagenet" / "train" / "n00000000").mkdir()
    for split in ("train", "val"):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
            tmp_path / "imagenet" / split / "n00000000" / "x.JPEG"
        )
    assert main(["evaluate", str(tmp_path / "tv"), "--data", str(tmp_path / "imagenet")]) == 2
    err = capsys.readouterr().err
    assert "n00000000" in err and "not the checkpoint's" in err and err.count("\n") == 1
    # a run written before identities were stored (classes = the display names) still matches WNIDs
    old = dict(ck, classes=ck["class_names"])
    (tmp_path / "old").mkdir()
    torch.save(old, tmp_path / "old" / "best.pt")
    assert main(["evaluate", str(tmp_path / "old"), "--data", str(tmp_path / "in256"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 6


def test_weights_torchvision_offline_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchvision.models import AlexNet_Weights

    def offline(self, *a, **k):  # type: ignore[no-untyped-def]
        raise OSError("network is unreachable")

    monkeypatch.setattr(type(AlexNet_Weights.IMAGENET1K_V1), "get_state_dict", offline)
    assert main(["weights", "torchvision", "--out", str(tmp_path / "tv")]) == 2
    err = capsys.readouterr().err
    assert "pass --file PATH" in err and err.count("\n") == 1


def test_export_round_trip_and_every_command_takes_the_folder(
    trained_run: Path, tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "exp"
    assert main(["export", str(trained_run), "--format", "safetensors", "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "config.json", "README.md"}
    config = json.loads((out / "config.json").read_text())
    assert config["model_name"] == "cifar_80sec" and config["classes"] == ["blue", "green", "red"]
    assert set(config["eval_transform"]) >= {"image_size", "crop_size", "mean", "std"}
    assert config["provenance"]["checkpoint_sha256"] and "val_top1_error" in config["metrics"]
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: alexnet\npipeline_tag: image-classification")
    a, b = alexnet.load(trained_run), alexnet.load(out)
    img = Image.new("RGB", (40, 32), (220, 10, 10))
    pa, pb = a.predict([img])[0], b.predict([img])[0]
    assert pa.labels == pb.labels and pa.probs == pytest.approx(pb.probs, abs=1e-6)
    capsys.readouterr()
    assert main(["evaluate", str(out), "--data", str(tiny_folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 60 and (out / "evaluate" / "result.json").is_file()
    assert main(["predict", str(out), str(tiny_folder / "val" / "red")]) == 0
    assert main(["visualize", "kernels", str(out), "--out", str(tmp_path / "k.png")]) == 0
    # hf-hub:ORG/NAME goes through huggingface_hub's cache: here a local folder stands in for it
    import huggingface_hub

    calls = []

    def fake_download(repo_id: str, **kw):  # type: ignore[no-untyped-def]
        calls.append(repo_id)
        return str(out)

    pytest.MonkeyPatch().setattr(huggingface_hub, "snapshot_download", fake_download)
    c = alexnet.load("hf-hub:someone/cifar-80sec")
    assert calls == ["someone/cifar-80sec"] and c.predict([img])[0].labels == pa.labels


def test_export_keeps_the_mean_image(tmp_path: Path, tiny_folder: Path) -> None:
    from alexnet import TrainConfig
    from alexnet.training import train

    run = tmp_path / "mi"
    train(
        TrainConfig(
            model="cifar_80sec",
            data=str(tiny_folder),
            out=str(run),
            epochs=1,
            batch_size=32,
            workers=0,
            normalize="mean_image",
            max_train_images=48,
        ),
        progress=False,
        log=lambda s: None,
    )
    from alexnet.export import export_safetensors

    out = export_safetensors(run, tmp_path / "e")
    a, b = alexnet.load(run), alexnet.load(out)
    assert torch.equal(a.transform.mean_image, b.transform.mean_image)


def test_features_of_a_dataset_and_of_images(
    trained_run: Path, tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "f.npz"
    assert main(["features", str(trained_run), "--data", str(tiny_folder), "--layer", "last", "--out", str(out)]) == 0
    z = np.load(out)
    assert z["features"].shape == (180, 64) and z["labels"].shape == (180,) and len(z["paths"]) == 180
    capsys.readouterr()
    img = tiny_folder / "val" / "red" / "0001.png"
    assert main(["features", str(trained_run), str(img), "--layer", "last", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert len(r["features"]) == 1 and len(r["features"][0]["vector"]) == 64
    assert main(["features", str(trained_run), str(img), "--layer", "fc7", "--json"]) == 2
    assert "cifar_80sec has no such layer; it has last" in capsys.readouterr().err
    # no --layer: fc7 where the model has it, else last; files may follow the options
    assert main(["features", str(trained_run), "--json", str(img)]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["layer"] == "last" and len(r["features"][0]["vector"]) == 64
    # neither --out nor --json: refused before any work
    assert main(["features", str(trained_run), "--data", "cifar10:/nonexistent"]) == 2
    assert "give --out FILE.npz (or --json)" in capsys.readouterr().err


@pytest.mark.parametrize("layer,dim", [("pool5", 256 * 36), ("fc6", 4096), ("fc7", 4096)])
def test_alexnet_feature_layers(layer: str, dim: int) -> None:
    from alexnet.inference.features import extract

    for name in ("alexnet", "alexnet_tv"):
        m = alexnet.create_model(name, num_classes=10).eval()
        x = torch.randn(2, 3, 224, 224)
        f = extract(m, name, x, layer)
        assert f.shape == (2, dim)
    m = alexnet.create_model("alexnet", num_classes=10).eval()
    assert torch.allclose(extract(m, "alexnet", x, "fc7"), m.forward_features(x))


def test_fine_tune_from_a_run_to_a_two_class_folder(
    trained_run: Path, tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--init loads the matching layers, replaces the output layer (3 -> 2 classes, named in the log),
    --freeze keeps the layers up to it fixed, --lr-body scales the loaded layers' rate, and the eval
    transform keeps the source's normalisation."""
    import shutil

    two = tmp_path / "two"
    for split in ("train", "val"):
        for c in ("blue", "red"):
            shutil.copytree(tiny_folder / split / c, two / split / c)
    out = tmp_path / "ft"
    code = main(
        [
            "train",
            "--recipe",
            "finetune",
            "--init",
            str(trained_run),
            "--data",
            str(two),
            "--out",
            str(out),
            "--epochs",
            "2",
            "--batch-size",
            "16",
            "--workers",
            "0",
            "--freeze",
            "conv3",
            "--lr-body",
            "0.1",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "replaced (new shape, trained from scratch): classifier.fc10.bias, classifier.fc10.weight" in err
    assert "frozen, up to features.conv3" in err
    src = torch.load(trained_run / "best.pt", weights_only=True)
    got = torch.load(out / "last.pt", weights_only=True)
    assert got["model_name"] == "cifar_80sec" and got["classes"] == ["blue", "red"]
    for k in ("features.conv1.weight", "features.conv3.bias"):  # frozen: unchanged
        assert torch.equal(got["model"][k], src["model"][k]), k
    assert not torch.equal(got["model"]["classifier.fc64.weight"], src["model"]["classifier.fc64.weight"])
    assert got["eval_transform"]["mean"] == src["eval_transform"]["mean"]
    assert got["model_options"]["init"] == src["model_options"]["init"] == "torch"  # the source's architecture
    groups = got["optimizer"]["param_groups"]
    assert sorted({g["lr_scale"] for g in groups}) == [0.1, 1.0]  # fc64 loaded (0.1x), fc10 new (1x)
    clf = alexnet.load(out)
    assert clf.evaluate(str(two), progress=False).top1_error < 0.5  # 2 classes: chance is 50%
    assert (
        main(
            ["train", "--init", str(trained_run), "--model", "lenet5", "--data", str(two), "--out", str(tmp_path / "x")]
        )
        == 2
    )
    assert "holds a cifar_80sec, not a lenet5" in capsys.readouterr().err
    assert main(["train", "--data", str(two), "--out", str(tmp_path / "y"), "--freeze", "conv1"]) == 2


def test_a_fine_tuning_run_resumes_with_its_frozen_layers(
    trained_run: Path, tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ft"
    common = [
        "--init",
        str(trained_run),
        "--data",
        str(tiny_folder),
        "--out",
        str(out),
        "--batch-size",
        "32",
        "--workers",
        "0",
        "--freeze",
        "fc64",
        "--lr-body",
        "0.5",
        "--recipe",
        "finetune",
    ]
    assert main(["train", *common, "--epochs", "1"]) == 0
    assert main(["train", *common, "--epochs", "2", "--resume"]) == 0, capsys.readouterr().err
    got = torch.load(out / "last.pt", weights_only=True)
    src = torch.load(trained_run / "best.pt", weights_only=True)
    assert got["epoch"] == 2 and torch.equal(
        got["model"]["classifier.fc64.weight"], src["model"]["classifier.fc64.weight"]
    )


@pytest.mark.network
def test_weights_torchvision_downloaded_for_real(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real download through torchvision's weights API (``-m network``; skipped offline)."""
    import socket

    try:
        socket.create_connection(("download.pytorch.org", 443), timeout=5).close()
    except OSError as e:
        pytest.skip(f"no network ({e})")
    from torchvision.models import AlexNet_Weights

    assert main(["weights", "torchvision", "--out", str(tmp_path / "tv")]) == 0
    clf = alexnet.load(tmp_path / "tv")
    ref = AlexNet_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
    assert all(torch.equal(clf.model.state_dict()[k].cpu(), v) for k, v in ref.items())
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8))
    assert len(clf.predict([img], top_k=5)[0].labels) == 5
