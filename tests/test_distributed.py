"""torchrun on the CPU (gloo): 2 processes x batch 18 give the weights of 1 process x batch 36,
and evaluation counts every validation image exactly once across the processes."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from alexnet import TrainConfig
from alexnet.training import train

ARGS = dict(
    model="cifar_80sec",
    epochs=2,
    batch_size=36,
    lr=0.05,
    schedule="constant",
    random_crop=False,
    flip=False,
    workers=0,
    max_val_images=59,
)  # 180 train images = 5 steps of 36; an odd val count


@pytest.mark.skipif(
    shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
    reason="torchrun not installed",
)
@pytest.mark.parametrize("fmt", ["folder", "jpeg", "clip"])
def test_two_processes_match_one_process(tiny_folder: Path, tmp_path: Path, fmt: str) -> None:
    """Also from JPEG shards, decoded by a worker process in each: the two processes' shares are
    disjoint and cover every image once per epoch (else the weights would differ). And with gradient
    clipping active: the two processes clip the averaged gradient by its global norm, as one does."""
    data, args = tiny_folder, dict(ARGS)
    if fmt == "clip":
        args["clip_grad_norm"] = 0.2
    if fmt == "jpeg":
        from alexnet.data.shards.writer import prepare_shards

        data = prepare_shards(tiny_folder, tmp_path / "jp", size=32, shard_size=50, workers=0, progress=False).dst
        args["workers"] = 1
    train(
        TrainConfig(data=str(data), out=str(tmp_path / "one"), model_options={"init": "torch"}, **args),
        progress=False,
        log=lambda s: None,
    )
    flags = [
        f"--{k.replace('_', '-')}" + ("" if isinstance(v, bool) else f"={v}")
        if v is not False
        else f"--no-{k.replace('_', '-')}"
        for k, v in args.items()
    ]
    torchrun = _torchrun()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "alexnet",
            "train",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "two"),
            "--model-opt",
            'init="torch"',
            *flags,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    one = torch.load(tmp_path / "one" / "last.pt", weights_only=True)
    two = torch.load(tmp_path / "two" / "last.pt", weights_only=True)
    for k, v in one["model"].items():
        assert torch.allclose(v, two["model"][k], atol=1e-5, rtol=1e-4), k
    assert two["environment"]["processes"] == "2"
    rows = list(csv.DictReader(open(tmp_path / "two" / "metrics.csv")))
    assert [int(r["val_images"]) for r in rows] == [59, 59]  # each image once, none padded in
    ref = list(csv.DictReader(open(tmp_path / "one" / "metrics.csv")))
    assert abs(float(rows[-1]["val_top1_error"]) - float(ref[-1]["val_top1_error"])) < 1e-6
    assert abs(float(rows[-1]["train_loss"]) - float(ref[-1]["train_loss"])) < 1e-4
    if fmt == "clip":  # clipping acted (the norm before it was above the bound), and alike in both
        assert all(float(r["grad_norm"]) > 0.2 for r in ref), [r["grad_norm"] for r in ref]
        assert [float(r["grad_norm"]) for r in rows] == pytest.approx([float(r["grad_norm"]) for r in ref], rel=1e-4)


def _torchrun() -> str:
    return shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")


@pytest.mark.slow
def test_two_process_run_stopped_mid_epoch_resumes_exactly(tmp_path: Path) -> None:
    import signal
    import time

    from .conftest import make_folder
    from .test_resume import _cmd, _position

    data = make_folder(tmp_path / "data", {"train": 30, "val": 4}, size=128)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def cmd(out: Path, *extra: str) -> list[str]:
        return [_torchrun(), "--standalone", "--nproc_per_node=2", *_cmd(data, out, *extra)[1:]]

    r = subprocess.run(cmd(tmp_path / "straight"), capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    proc = subprocess.Popen(cmd(tmp_path / "cut"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        t0 = time.time()
        while _position(tmp_path / "cut" / "last.pt")[1] <= 0 or _position(tmp_path / "cut" / "last.pt")[0] < 1:
            assert proc.poll() is None and time.time() - t0 < 300
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # torchrun passes it on to both processes
        proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert _position(tmp_path / "cut" / "last.pt")[0] < 3
    r = subprocess.run(cmd(tmp_path / "cut", "--resume"), capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_paper_recipe_under_torchrun_leaves_a_complete_run(tmp_path: Path) -> None:
    from alexnet.data.packed.writer import prepare

    from .conftest import make_folder

    prepare(
        make_folder(tmp_path / "tree", {"train": 16, "val": 4}, size=300),
        tmp_path / "packed",
        workers=0,
        progress=False,
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [
            _torchrun(),
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "alexnet",
            "train",
            "--recipe",
            "alexnet_imagenet",
            "--data",
            str(tmp_path / "packed"),
            "--out",
            str(tmp_path / "run"),
            "--epochs",
            "2",
            "--batch-size",
            "24",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("done in") == 1  # rank 0 reports
    for name in (
        "config.toml",
        "environment.json",
        "metrics.csv",
        "curves.png",
        "confusion.png",
        "best.pt",
        "last.pt",
        "tensorboard",
    ):
        assert (tmp_path / "run" / name).exists(), name
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert len(rows) == 2 and int(rows[-1]["val_images"]) == 12
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ck["config"]["ten_crop_eval"] and ck["config"]["pca_lighting"] == 0.1


def _worker_pid(out: Path, local_rank: int, attempt: int) -> int | None:
    """The pid of the torchrun worker of ``local_rank`` in restart ``attempt`` training into ``out``."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            env = dict(
                kv.split("=", 1)
                for kv in (d / "environ").read_bytes().decode(errors="replace").split("\0")
                if "=" in kv
            )
            cmdline = (d / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if (
            str(out) in cmdline
            and env.get("LOCAL_RANK") == str(local_rank)
            and env.get("TORCHELASTIC_RESTART_COUNT") == str(attempt)
        ):
            return int(d.name)
    return None


@pytest.mark.faults
def test_a_torchrun_job_survives_a_lost_worker_bit_for_bit(tmp_path: Path) -> None:
    """The elastic command of the README: torchrun --max-restarts 3 ... train --resume. Killing the
    worker of local rank 1 mid-epoch (SIGKILL, after a mid-epoch checkpoint) makes torchrun restart
    the group; the restarted workers resume from the last checkpoint, and the final weights equal an
    uninterrupted 2-process run's bit for bit.

    The restarted group joins through the agent's store under this restart's prefix
    (distributed._restart_store): with torch's default its workers could read their dead
    predecessors' addresses, and the join then failed in about half the runs here."""
    from .conftest import make_folder
    from .test_resume import _cmd, _position

    torchrun = _torchrun()
    data = make_folder(tmp_path / "data", {"train": 30, "val": 4}, size=128)
    # a bound on a join or collective, so that a hung attempt would fail the test in minutes, not 30
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ALEXNET_DIST_TIMEOUT": "60"}

    def cmd(out: Path, *extra: str) -> list[str]:
        return [torchrun, "--standalone", "--nproc_per_node=2", "--max-restarts=3", *_cmd(data, out, *extra)[1:]]

    r = subprocess.run(cmd(tmp_path / "straight"), capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "elastic"
    proc = subprocess.Popen(cmd(out, "--resume"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        t0 = time.time()
        while True:  # a checkpoint written mid-epoch, then the second worker dies
            assert proc.poll() is None and time.time() - t0 < 300, "the job ended before a worker could be killed"
            epoch, batches = _position(out / "last.pt") if (out / "last.pt").exists() else (-1, -1)
            if epoch >= 1 and batches > 0:
                break
            time.sleep(0.05)
        pid = _worker_pid(out, 1, 0)
        assert pid is not None, "no worker of local rank 1"
        os.kill(pid, signal.SIGKILL)
        log, _ = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert proc.returncode == 0, log[-3000:]
    assert all(_worker_pid(out, 1, attempt) is None for attempt in range(4))  # no worker left behind
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(out / "last.pt", weights_only=True)
    assert int(b["epoch"]) == 3 and b["environment"]["processes"] == "2"
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert "exitcode: -9" in log and "local_rank: 1" in log, log[-3000:]  # torchrun saw the worker die
    assert "connectFullMesh" not in log, log[-3000:]  # the restarted group joined at its first try


def test_an_elastic_restart_joins_under_its_own_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each restart round's group keys live under that round's prefix in the agent's store, so a
    restarted worker never reads an address its dead predecessor published (the flaky rejoin)."""
    import datetime

    import torch.distributed as dist

    from alexnet.distributed import _restart_store

    server = dist.TCPStore("127.0.0.1", 0, 1, is_master=True, timeout=datetime.timedelta(seconds=10))
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(server.port), "TORCHELASTIC_USE_AGENT_STORE": "True"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT", raising=False)
    assert _restart_store(0, 2) == {}  # not under an elastic agent: torch's own store
    stores = {}
    for attempt in ("0", "1"):
        monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", attempt)
        kw = _restart_store(1, 2)
        assert (kw["rank"], kw["world_size"]) == (1, 2)
        stores[attempt] = kw["store"]
        stores[attempt].set("rank_1", f"address of attempt {attempt}")
    assert stores["1"].get("rank_1") == b"address of attempt 1" and stores["0"].get("rank_1") == b"address of attempt 0"
    assert server.get("alexnet/restart_1/rank_1") == b"address of attempt 1"
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "False")  # workers run their own store: nothing to do
    assert _restart_store(1, 2) == {}
