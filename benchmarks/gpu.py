"""The GPU benchmark and check, in one run: ``benchmarks/gpu.sh`` calls this.

    benchmarks/gpu.sh [--out benchmarks/results] [--budget 420]     # on a CUDA GPU: under 8 minutes
    benchmarks/gpu.sh --smoke --out DIR                             # anywhere: every row at toy size

Rows, each with its own time limit (a row past it is reported as such, its child processes killed,
and the next one runs); the correctness rows first, so that a short budget cuts throughput, not them:

1. the Triton LRN against the torch fallback on AlexNet's two LRN layers: the largest difference and
   the time of forward + backward;
2. a 2-epoch ``alexnet train`` of the paper's ``alexnet`` on generated packed data whose size is not a
   multiple of the batch (each epoch ends on a short batch), without and with ``--cuda-graphs``;
3. a few steps under ``torch.cuda.set_sync_debug_mode("error")``: no host synchronisation in the step;
4. kill -9 and ``--resume`` under ``--deterministic``, the final weights compared bit for bit with an
   uninterrupted run's;
5. throughput of ``alexnet`` and ``alexnet_tv`` (``alexnet bench train``, one model at a time, so that a
   row past its limit keeps the models it finished): the step on synthetic data at batch 128/256/512
   in bf16 and fp32, with CUDA graphs and with ``torch.compile``; end to end from a generated packed
   dataset through the training loop's input pipeline, against torchvision's reference style;
6. JPEG shards (``shorter``, RandomResizedCrop) trained for an epoch with ``--decode gpu`` (nvJPEG)
   and with the loader's workers decoding: both rates and losses;
7. 2-process DDP under torchrun (with two GPUs or more).

The results file is rewritten after every row, so a run cut short keeps what it measured.

``--smoke`` runs every row at toy size (a few images, batch 4, one repeat) on whatever device there
is, in well under 5 minutes on a 2-core CPU, so that the script is proven before a GPU session spends
its minutes on it; rows that need CUDA say "skipped: needs CUDA". CI runs the smoke form.
Writes ``OUT/gpu-<device>.md`` (the table, with the device, date and command) and ``.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "src"), str(HERE.parent)]  # the checkout's package and tests/support

from alexnet.bench import bench_train, cpu_name  # noqa: E402  (the checkout's package, before any install)
from alexnet.runtime import slow_half_precision  # noqa: E402
from tests.support.data import synthetic_jpegs, synthetic_packed  # noqa: E402

CUDA = torch.cuda.is_available()


class RowTimeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise RowTimeout in the main thread after ``seconds`` (SIGALRM)."""

    def expire(signum: int, frame: Any) -> None:
        raise RowTimeout(f"over its limit of {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(1.0, seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def alexnet_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "alexnet", *args]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(HERE.parent / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}


@contextlib.contextmanager
def child(cmd: list[str], **kw: Any) -> Iterator[subprocess.Popen[str]]:
    """``cmd`` in a session of its own, killed with every process it started (torchrun's workers too)
    when the block ends early: a row past its limit leaves nothing running on the GPU."""
    proc = subprocess.Popen(cmd, env=env(), start_new_session=True, text=True, **kw)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_child(cmd: list[str], timeout: float) -> tuple[int, str]:
    """(exit status, stderr) of ``cmd`` run to its end within ``timeout`` seconds (``child``)."""
    with child(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        _, err = proc.communicate(timeout=timeout)
        return proc.returncode, err


def train_cli(args: list[str], timeout: float) -> None:
    code, err = run_child(alexnet_cmd("train", *args), timeout)
    if code != 0:
        raise RuntimeError((err.strip().splitlines() or [f"exit {code}"])[-1][:300])


def metrics(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(open(run / "metrics.csv")))


def same_weights(a: Path, b: Path) -> tuple[bool, float]:
    wa = torch.load(a, weights_only=True)["model"]
    wb = torch.load(b, weights_only=True)["model"]
    diff = max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa)
    return all(torch.equal(wa[k], wb[k]) for k in wa), diff


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(HERE / "results"), help="the folder for gpu-<device>.md and .json")
    p.add_argument("--budget", type=float, default=420, help="seconds for all rows; later rows are skipped past it")
    p.add_argument("--smoke", action="store_true", help="every row at toy size, on any device (CI runs this)")
    args = p.parse_args()
    smoke = args.smoke
    if not CUDA and not smoke:
        print("benchmarks/gpu.py: no CUDA GPU here (--smoke runs the rows at toy size anywhere)", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    device = torch.cuda.get_device_name(0) if CUDA else cpu_name()
    workers = 2 if smoke else min(16, os.cpu_count() or 4)
    size = (
        dict(images=48, jpegs=16, batch=4, steps=2, repeats=1, alexnet_images=21, alexnet_batch=4)
        if smoke
        else dict(images=20000, jpegs=4096, batch=256, steps=20, repeats=3, alexnet_images=5000, alexnet_batch=128)
    )
    table: list[dict[str, Any]] = []  # rows of the throughput table
    hooks: list[Callable[[], None]] = []  # run after every row (the results file)
    checks: list[tuple[str, str]] = []  # (row, result) of the other rows

    def left() -> float:
        return args.budget - (time.perf_counter() - t0)

    def row(name: str, limit: float, fn: Callable[[], Any], needs: str = "") -> None:
        """Run one row within ``limit`` seconds (and the budget); record its outcome either way."""
        if needs == "cuda" and not CUDA:
            checks.append((name, "skipped: needs CUDA"))
        elif needs == "2 GPUs" and torch.cuda.device_count() < 2:
            checks.append((name, "skipped: needs 2 GPUs"))
        elif left() < 10:
            checks.append((name, "skipped: the time budget is spent"))
        else:
            t = time.perf_counter()
            try:
                with time_limit(min(limit, left())):
                    result = fn()
                if result is not None:
                    checks.append((name, f"{result} ({time.perf_counter() - t:.0f} s)"))
            except Exception as e:  # one failing row must not lose the others
                checks.append((name, f"FAILED: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"))
        print(f"{name}: {checks[-1][1] if checks and checks[-1][0] == name else 'done'}", flush=True)
        for hook in hooks:
            hook()

    def throughput(label: str, models: list[str], **kw: Any) -> Callable[[], None]:
        def go() -> None:
            for model in models:  # one at a time: a row past its limit keeps the models it finished
                for r in bench_train(
                    [model],
                    log=lambda s: None,
                    workers=workers,
                    device="cuda" if CUDA else "cpu",
                    steps=size["steps"],
                    repeats=size["repeats"],
                    **kw,
                ):
                    r["label"] = label
                    table.append(r)

        return go

    with tempfile.TemporaryDirectory(prefix="alexnet-gpu-") as tmp_name:
        tmp = Path(tmp_name)
        packed = synthetic_packed(tmp / "packed", size["images"], val=max(8, size["images"] // 20))
        jpegs = synthetic_jpegs(tmp / "jpegs", size["jpegs"])
        prep = time.perf_counter() - t0

        def write_results(final: bool = False) -> None:
            """The results file, rewritten after every row: a run cut short keeps every row it finished."""
            total = time.perf_counter() - t0

            def f(v: object, fmt: str = "{:,.0f}") -> str:
                return "—" if v is None else fmt.format(v)

            command = "benchmarks/gpu.sh" + (" --smoke" if smoke else "") + f" --out {args.out}"
            lines = [
                f"# GPU benchmark{' (smoke: toy sizes)' if smoke else ''}: {device}",
                "",
                f"{time.strftime('%Y-%m-%d')}; torch {torch.__version__}, CUDA {torch.version.cuda}, "
                f"{torch.cuda.device_count()} GPU(s), {os.cpu_count()} CPU cores; command: `{command}` "
                f"({total:.0f} s {'in all' if final else 'so far: the run had not finished'}, {prep:.0f} s of it "
                f"generating the data). Images/s, median of {size['repeats']} run(s) of {size['steps']} steps.",
                "",
                "| configuration | model | batch | precision | step (synthetic) | LRN share | end to end | "
                "torchvision reference | end to end / reference | step FLOP/s of matmul |",
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            ]
            for r in table:
                lines.append(
                    f"| {r['label']} | `{r['model']}` | {r['batch_size']} | {r['precision']} | "
                    f"{f(r['step_images_per_sec'])} | {f(r['lrn_share'], '{:.0%}')} | {f(r['images_per_sec'])} | "
                    f"{f(r['baseline_images_per_sec'])} | {f(r['ratio'], '{:.1f}x')} | "
                    f"{f(r['step_flops_fraction'], '{:.0%}')} |"
                )
            lines += ["", "| row | result |", "| --- | --- |"] + [f"| {name} | {result} |" for name, result in checks]
            text = "\n".join(lines) + "\n"
            if final:
                print(text)
            out_dir = Path(args.out)
            out_dir.mkdir(parents=True, exist_ok=True)
            name = "".join(c if c.isalnum() or c in "-_" else "-" for c in device.split(" (")[0]).strip("-").lower()
            name = ("smoke-" if smoke else "") + name
            for suffix, content in (
                (".md", text),
                (
                    ".json",
                    json.dumps(
                        {"table": table, "checks": checks, "smoke": smoke, "finished": final}, indent=1, default=str
                    )
                    + "\n",
                ),
            ):
                tmp_file = out_dir / f".gpu-{name}{suffix}.tmp"
                tmp_file.write_text(content)
                os.replace(tmp_file, out_dir / f"gpu-{name}{suffix}")  # a kill mid-write leaves the last one whole
            if final:
                print(f"wrote {out_dir / f'gpu-{name}.md'}")

        hooks.append(write_results)
        models = ["alexnet", "alexnet_tv"]
        bs = size["batch"]
        # a throughput row's limit: the smoke run's rows finish within 45 s on a 2-core CPU alone, but one
        # went past 45 s there beside another process (CI, 2026-12-03); 90 s leaves room for a busy machine
        limit = 90

        # correctness first: the rows a short budget must not lose
        # 4. the Triton LRN against the torch fallback, AlexNet's two LRN layers in bf16
        def triton_lrn() -> str:
            from alexnet.models import _rnorm as R
            from alexnet.models._rnorm_triton import bytes_moved

            batch = 256
            out = []
            for c, hw in ((96, 55), (256, 27)):
                x = (torch.randn(batch, c, hw, hw, device="cuda") * 3).relu().to(torch.bfloat16)
                x = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
                g = torch.randn_like(x)
                times, results = {}, {}
                for impl in ("triton", "torch"):

                    def step(x: torch.Tensor = x, g: torch.Tensor = g, impl: str = impl) -> torch.Tensor:
                        y = R.cross_map_norm(x, 5, 1e-4 / 5, 0.75, 2.0, impl=impl, groups=2)
                        (dx,) = torch.autograd.grad(y, x, g)
                        return torch.cat([y.flatten(), dx.flatten()])

                    for _ in range(3):
                        results[impl] = step()
                    torch.cuda.synchronize()
                    t = time.perf_counter()
                    for _ in range(20):
                        step()
                    torch.cuda.synchronize()
                    times[impl] = (time.perf_counter() - t) / 20
                diff = float((results["triton"].float() - results["torch"].float()).abs().max())
                moved = sum(bytes_moved(tuple(x.shape), 2).values())
                out.append(
                    f"{c}x{hw}x{hw}: triton {times['triton'] * 1e3:.2f} ms, torch {times['torch'] * 1e3:.2f} ms "
                    f"({times['torch'] / times['triton']:.1f}x), max diff {diff:.1e}, "
                    f"{moved / times['triton'] / 1e9:,.0f} GB/s of the traffic model"
                )
            return f"batch {batch}, bf16, forward + backward: " + "; ".join(out)

        row("Triton LRN against the torch fallback", 60, triton_lrn, needs="cuda")

        # 2. the paper's alexnet trained by the CLI, each epoch ending on a short batch
        n, b = size["alexnet_images"], size["alexnet_batch"]
        paper = synthetic_packed(tmp / "paper", n, classes=10, val=max(8, n // 10))
        assert n % b, "the point: an epoch's last batch is short"
        base = [
            "--model",
            "alexnet",
            "--data",
            str(paper),
            "--epochs",
            "2",
            "--batch-size",
            str(b),
            "--workers",
            str(workers),
            "--recipe",
            "none",
            "--normalize",
            "meanstd",
            "--lr",
            "0.01",
        ]

        def train_row(extra: list[str], tag: str) -> Callable[[], str]:
            def go() -> str:
                out = tmp / f"train-{tag}"
                train_cli(base + ["--out", str(out), *extra], timeout=max(30, left()))
                m = metrics(out)
                return (
                    f"2 epochs of {n:,} images, batch {b}: {float(m[-1]['images_per_sec']):,.0f} img/s in epoch 2, "
                    f"train loss {float(m[-1]['train_loss']):.4f}"
                )

            return go

        row("alexnet train, 2 epochs, short last batch", 240, train_row([], "eager"))
        row(
            "alexnet train, 2 epochs, short last batch, --cuda-graphs",
            240,
            train_row(["--cuda-graphs"], "graphs"),
            needs="cuda",
        )

        # the step's freedom from host synchronisation, checked by CUDA itself: a few steps of the
        # paper's alexnet under torch.cuda.set_sync_debug_mode("error") (any sync raises)
        def no_sync() -> str:
            from alexnet.bench import _StepBench
            from alexnet.config import TrainConfig

            cfg = TrainConfig(model="alexnet", batch_size=bs, precision="bf16", device="cuda", normalize="meanstd")
            step = _StepBench("alexnet", cfg, torch.device("cuda"), 1000, {})
            for _ in range(3):  # warm-up: cuDNN's autotuning and the allocator's first blocks
                step()
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
            try:
                for _ in range(5):
                    step()
            finally:
                torch.cuda.set_sync_debug_mode(0)
            torch.cuda.synchronize()
            return f"5 steps of alexnet, bf16, batch {bs}, under set_sync_debug_mode('error'): no host sync"

        row("no host sync in the step (CUDA's sync debug mode)", 60, no_sync, needs="cuda")

        # 3. kill -9 mid-run, --resume, the same weights as an uninterrupted run
        def kill_and_resume() -> str:
            every = max(2, (n // b) // 4)  # a few mid-epoch checkpoints per epoch (each is AlexNet + momentum)
            args3 = base + ["--deterministic", "--checkpoint-every", str(every), "--epochs", "2"]
            whole, cut = tmp / "whole", tmp / "cut"
            train_cli(args3 + ["--out", str(whole)], timeout=max(30, left()))
            cmd = alexnet_cmd("train", *args3, "--out", str(cut))
            with child(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
                deadline = time.monotonic() + max(30, left())
                while not (cut / "last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                os.killpg(proc.pid, signal.SIGKILL)  # SIGKILL: no handler runs
                proc.wait()
            train_cli(["--resume", str(cut)], timeout=max(30, left()))
            same, diff = same_weights(whole / "last.pt", cut / "last.pt")
            if not same:
                raise RuntimeError(f"the resumed run's weights differ from the uninterrupted run's by up to {diff:.2e}")
            return "killed after its first checkpoint, resumed: final weights bit for bit equal"

        row("kill -9 and --resume under --deterministic", 300, kill_and_resume)

        # then throughput, model by model (a row past its limit keeps the models it finished). A smoke run
        # on a CPU without native bf16 kernels runs the bf16 rows in fp32: torch emulates bf16 there, about
        # 100x slower than fp32 for a product (a 2-core AMD EPYC, 2026-12-03), so the rows would take
        # minutes a step; the smoke proves the rows' code, which the precision does not change.
        half = "fp32" if smoke and not CUDA and slow_half_precision("bf16", "cpu") else "bf16"
        if half != "bf16":
            checks.append(("bf16 throughput rows", "run in fp32: this CPU has no native bf16 kernels (oneDNN)"))
        row(
            f"end to end, {half}, batch {bs} (+ torchvision reference, fp32)",
            limit,
            throughput(
                f"end to end, {half}, batch {bs}",
                models,
                batch_size=bs,
                precision=half,
                data=str(packed),
                jpeg_dir=str(jpegs),
            ),
        )
        for precision in dict.fromkeys((half, "fp32")):
            for b in [bs] if smoke else [128, 256, 512]:
                row(
                    f"step, {precision}, batch {b}",
                    limit,
                    throughput(
                        f"step, {precision}, batch {b}", models, batch_size=b, precision=precision, lrn_share=b == bs
                    ),
                )
        row(
            f"step, bf16, batch {bs}, CUDA graphs",
            limit,
            throughput(
                f"step, bf16, batch {bs}, CUDA graphs",
                models,
                batch_size=bs,
                precision="bf16",
                cuda_graphs=True,
                lrn_share=False,
            ),
            needs="cuda",
        )
        row(
            f"step, bf16, batch {bs}, torch.compile",
            150,
            throughput(
                f"step, bf16, batch {bs}, torch.compile",
                models,
                batch_size=bs,
                precision="bf16",
                compile=True,
                warmup=3,
                lrn_share=False,
            ),
            needs="cuda",
        )

        # 5. DDP
        def ddp() -> str:
            out = tmp / "ddp"
            cmd = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc_per_node=2",
                "-m",
                "alexnet",
                "train",
                "--model",
                "alexnet_tv",
                "--data",
                str(packed),
                "--out",
                str(out),
                "--epochs",
                "2",
                "--batch-size",
                "512",
                "--precision",
                "bf16",
                "--workers",
                str(workers // 2),
            ]
            code, err = run_child(cmd, timeout=max(30, left()))
            if code != 0:
                raise RuntimeError((err.strip().splitlines() or ["?"])[-1][:200])
            rate = float(metrics(out)[-1]["images_per_sec"])
            return f"2-process DDP, alexnet_tv, bf16, total batch 512: {rate:,.0f} img/s"

        # JPEG shards decoded on the GPU (nvJPEG, --decode gpu) against the loader's workers, 1 epoch each
        def gpu_decode() -> str:
            import shutil

            from alexnet.data.shards.device_decode import jpeg_decoder
            from alexnet.data.shards.writer import prepare_shards

            src, shards = tmp / "decode-src", tmp / "decode-shards"
            shutil.copytree(jpegs / "train", src / "train")
            for d in sorted((src / "train").iterdir()):  # a val/ of one image per class
                (src / "val" / d.name).mkdir(parents=True)
                first = sorted(d.iterdir())[0]
                shutil.copy(first, src / "val" / d.name / first.name)
            prepare_shards(src, shards, size=256, shape="shorter", workers=workers, progress=False)
            rates, losses = {}, {}
            for decode in ("cpu", "gpu"):
                out = tmp / f"decode-{decode}"
                train_cli(
                    ["--model", "alexnet_tv", "--data", str(shards), "--epochs", "1", "--batch-size", str(bs)]
                    + ["--workers", str(workers), "--recipe", "none", "--normalize", "imagenet"]
                    + ["--random-resized-crop", "--precision", "bf16", "--decode", decode, "--out", str(out)],
                    timeout=max(30, left()),
                )
                m = metrics(out)[-1]
                rates[decode], losses[decode] = float(m["images_per_sec"]), float(m["train_loss"])
            return (
                f"alexnet_tv, RandomResizedCrop from shorter-side shards, {size['jpegs']:,} images: workers "
                f"{rates['cpu']:,.0f} img/s, {jpeg_decoder()[0]} on the GPU {rates['gpu']:,.0f} img/s "
                f"({rates['gpu'] / rates['cpu']:.2f}x); train loss {losses['cpu']:.4f} / {losses['gpu']:.4f}"
            )

        row("JPEG shards decoded on the GPU (--decode gpu)", 150, gpu_decode, needs="cuda")
        row("2-process DDP", 120, ddp, needs="2 GPUs")
    write_results(final=True)
    failed = [n for n, r in checks if r.startswith("FAILED")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
