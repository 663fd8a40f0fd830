"""The training loop: data, model, SGD with the paper's schedule, evaluation every epoch, metrics,
plots and atomic checkpoints. The parts live in ``engine/``; this module puts them in order.

Usage::

    cfg = TrainConfig.from_recipe("lenet5_mnist", data="mnist:../shared/data", out="runs/lenet")
    result = train(cfg)
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from .checkpoint import CheckpointRecord
from .config import TrainConfig
from .data.loader import BatchLoader
from .data.pipeline import Prefetcher
from .data.transforms import EvalTransform, TrainAugment
from .distributed import DistInfo, all_reduce_sum, any_true, cleanup
from .distributed import setup as setup_processes
from .engine import resume
from .engine.checks import check_batch_split, check_fast_paths, check_input_size, check_out_outside_data
from .engine.data import build_data, build_test, rgb_eigen
from .engine.evaluation import EvalResult, evaluate_model, plot_confusion
from .engine.finetune import freeze_layers, init_source, load_init
from .engine.optim import base_lr, make_optimizer
from .engine.resume import TrainState
from .engine.runfolder import RunFolder
from .engine.schedule import LRSchedule
from .engine.signals import StopSignals
from .engine.step import EpochState, TrainStep, train_epoch
from .errors import UserError
from .models import create_model
from .models.summary import count_params
from .runtime import (
    apply_kernel_settings,
    environment,
    keep_freed_memory,
    kernel_settings,
    pick_device,
    resolve_precision,
    seed_everything,
    select_device,
)


@dataclass
class TrainResult:
    out: Path
    metrics: list[dict[str, float]]
    best_top1_error: float
    best_epoch: int
    final: EvalResult | None
    seconds: float
    skipped: list[tuple[str, str]] = field(default_factory=list)
    final_ten_crop: EvalResult | None = None  # the last evaluation with the paper's ten patches (ten_crop_eval)
    test: EvalResult | None = None  # with val_split: the final weights on the test split, evaluated once at the end


def train(cfg: TrainConfig, *, progress: bool = True, log: Callable[[str], None] | None = None) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.data`` into the run folder ``cfg.out``; returns the metrics.

    Writes ``config.toml``, ``metrics.csv``, ``curves.png``, ``last.pt`` (every epoch, with the
    optimizer state) and ``best.pt`` (lowest val top-1 error), each checkpoint atomically.
    Ctrl-C keeps the last completed epoch's ``last.pt``; ``resume=True`` continues from it.
    One code path for one process and for each process of a torchrun job.
    """
    dinfo = setup_processes(cfg.device)
    try:
        return fit(cfg, dinfo, progress=progress and dinfo.is_main, log=log)
    finally:
        cleanup(dinfo)


def fit(cfg: TrainConfig, dinfo: DistInfo, *, progress: bool, log: Callable[[str], None] | None) -> TrainResult:
    """The run, top-down: check, set up, restore, then for each epoch train, evaluate, record, save."""
    say = (log or (lambda s: print(s, file=sys.stderr))) if dinfo.is_main else (lambda s: None)
    cfg, folder = check(cfg, dinfo, say)  # the run folder is this process's from here on
    try:
        run = setup(cfg, dinfo, folder, say)
        try:
            return train_epochs(run, say, progress)
        finally:
            run.batches.close()
    finally:
        folder.close()


def train_epochs(run: Run, say: Callable[[str], None], progress: bool) -> TrainResult:
    """Restore, then for each epoch: train, evaluate, record, save; then the final figures."""
    cfg, folder = run.cfg, run.folder
    state = run.restore() if cfg.resume else TrainState()
    run.start()
    run.transform.place(run.device)  # constants on the device once, not in the steps
    run.augment.place(run.device)
    final: EvalResult | None = None
    final10: EvalResult | None = None
    test: EvalResult | None = None
    try:
        with StopSignals() as stop:
            for epoch in range(state.start_epoch, cfg.epochs):
                totals = run.train_one_epoch(epoch, state, stop, progress)
                reached = 0 < cfg.target_train_error and totals.error <= cfg.target_train_error
                last = epoch + 1 == cfg.epochs or reached
                final = run.evaluate(progress) if (epoch + 1) % cfg.eval_every == 0 or last else None
                # the paper's ten-patch test, in its own columns: selection and curves use the centre crop
                final10 = run.evaluate(progress, ten_crop=True) if cfg.ten_crop_eval and last else None
                # with a held-out validation split, the test split is seen once: by the final weights
                test = run.evaluate(progress, test=True) if last and run.test_loader is not None else None
                row, improved = run.record(state, epoch, totals, final, final10, test)
                run.save_epoch(state, epoch, row, improved)
                if any_true(bool(stop), run.device):
                    raise KeyboardInterrupt
                if reached:
                    say(
                        f"training error {row['train_top1_error']:.2%} reached the target "
                        f"{cfg.target_train_error:.2%}: the run ends at epoch {epoch + 1}"
                    )
                    break
    except KeyboardInterrupt:
        say(f"\ninterrupted: {folder.out}/last.pt holds the run as far as it got; continue with --resume")
        raise
    finally:
        folder.close_writer()
    return run.finish(state, final, final10, test)


def check(cfg: TrainConfig, dinfo: DistInfo, say: Callable[[str], None]) -> tuple[TrainConfig, RunFolder]:
    """Everything that can be refused before any work: the config, the batch split, the run folder,
    and with ``--resume`` the run's own config."""
    cfg.validate()
    check_batch_split(cfg, dinfo.world_size)
    if not cfg.out:
        raise UserError("--out is required: the run folder to write")
    if cfg.data:
        check_out_outside_data(cfg)
    folder = RunFolder(cfg.out, main=dinfo.is_main)
    took_over = folder.lock()  # before the folder is looked at: two processes cannot both pass
    try:
        if took_over:
            say(took_over)
        folder.check(cfg.resume)
        if cfg.resume:
            cfg = resume.preflight(cfg, folder, say)
    except BaseException:
        folder.close()
        raise
    return cfg, folder


@dataclass
class EpochTotals:
    """An epoch's sums over every process."""

    loss_sum: float
    correct: float
    seen: float  # images of the whole epoch (a resumed epoch's earlier part included)
    new: float  # images trained by this pass (the rate's numerator)
    seconds_before: float  # training time of a resumed epoch's part before its mid-epoch checkpoint
    pass_seconds: float  # training time of this pass (the rate's denominator)
    t0: float  # when this pass started (perf_counter)

    @property
    def seconds(self) -> float:
        """The epoch's training time, both parts of a resumed epoch."""
        return self.seconds_before + self.pass_seconds

    @property
    def error(self) -> float:
        return 1 - self.correct / max(self.seen, 1)


@dataclass
class Run:
    """A run set up to train: what ``setup`` built, and the steps of ``fit`` that use it."""

    cfg: TrainConfig
    dinfo: DistInfo
    folder: RunFolder
    device: torch.device
    precision: str
    channels_last: bool
    train_ds: Any
    val_ds: Any
    classes: list[str]
    transform: EvalTransform
    model: nn.Module
    model_options: dict[str, Any]
    loaded: set[str] | None  # the parameters --init loaded
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    step: TrainStep
    train_loader: BatchLoader
    val_loader: BatchLoader
    test_loader: BatchLoader | None  # with val_split: the dataset's test split
    batches: Prefetcher
    schedule: LRSchedule
    augment: TrainAugment
    resume_ck: dict[str, Any] | None
    t_start: float
    say: Callable[[str], None]
    resolved: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    # ---------------------------------------------------------------------------------------- start

    def restore(self) -> TrainState:
        """The run so far, from ``last.pt``."""
        assert self.resume_ck is not None
        state, self.transform = resume.restore(
            self.resume_ck,
            cfg=self.cfg,
            classes=self.classes,
            model=self.model,
            optimizer=self.optimizer,
            schedule=self.schedule,
            scaler=self.scaler,
            steps_per_epoch=self.schedule.steps_per_epoch,
            batches_per_epoch=len(self.train_loader),
            out=self.folder.out,
            say=self.say,
        )
        self.resume_ck = None
        return state

    def start(self) -> None:
        """config.toml, environment.json, TensorBoard; the banner."""
        self.resolved = self.cfg.to_dict()
        self.env = environment() | {
            "device": str(self.device),
            "processes": str(self.dinfo.world_size),
            "precision": self.precision,
        }
        self.folder.start(self.resolved, self.env)
        t = self.transform
        held = f" (held out: {self.cfg.val_split:g} of the training split)" if self.test_loader is not None else ""
        test = f" / {len(self.test_loader.dataset):,} test" if self.test_loader is not None else ""  # type: ignore[arg-type]
        self.say(
            f"{self.cfg.model}: {count_params(self.model):,} parameters | {len(self.train_ds):,} train / "
            f"{len(self.val_ds):,} val{held}{test} images, {len(self.classes)} classes | input "
            f"{t.channels}x{t.input_size}x{t.input_size} | {self.device}, {self.precision}"
        )

    # ---------------------------------------------------------------------------------------- an epoch

    def train_one_epoch(self, epoch: int, state: TrainState, stop: StopSignals, progress: bool) -> EpochTotals:
        """One epoch (the rest of it after a mid-epoch checkpoint), summed over the processes."""
        cfg, dinfo, device = self.cfg, self.dinfo, self.device
        # Every random draw of an epoch depends on (seed, epoch) only, so a resumed run repeats it.
        # (Each process of a torchrun job draws its own dropout masks and crops.)
        torch.manual_seed(cfg.seed * 1_000_003 + epoch + 100_000_007 * dinfo.rank)
        gen = torch.Generator(device=device).manual_seed(cfg.seed * 7919 + epoch + 100_000_007 * dinfo.rank)
        # the distortions and the colour noise draw from their own generator: an arm with colour noise
        # sees the same crops and flips as one without
        noise = torch.Generator(device=device).manual_seed(cfg.seed * 6_700_417 + epoch + 100_000_007 * dinfo.rank + 1)
        gens = resume.EpochGenerators(gen, noise)
        ep = EpochState()
        self.step.reset(state.global_step)
        if state.partial is not None:
            ep = resume.restore_position(
                state.partial, self.step, gens, state.global_step, dinfo, device, f"{self.folder.out}/last.pt", self.say
            )
            state.partial = None
        self.train_loader.set_epoch(epoch, ep.batches_done)
        seen_before = ep.seen
        ep.started = time.perf_counter()
        desc = f"epoch {epoch + 1}/{cfg.epochs}"
        n_images = self.train_loader.num_images
        bar = tqdm(
            total=n_images,
            initial=min(n_images, ep.batches_done * self.train_loader.batch_size),
            desc=desc,
            unit="img",
            disable=not progress or None,
            leave=False,
            dynamic_ncols=True,
        )

        def after_step(gstep: int, st: EpochState) -> bool:
            return self.after_step(gstep, st, state, epoch, gens, desc, bar, stop)

        with bar:
            state.global_step, stopped = train_epoch(
                self.step,
                self.batches,
                lambda x: self.augment(x, self.transform, gen, self.channels_last, noise),
                self.schedule,
                state.global_step,
                cfg,
                len(self.train_loader),
                ep,
                bar,
                after_step,
            )
        if stopped:
            raise KeyboardInterrupt
        loss_sum, correct = self.read_sums(desc)
        (totals,) = all_reduce_sum(torch.tensor([loss_sum, correct, ep.seen], dtype=torch.float64, device=device))
        loss_sum, correct, seen = totals.tolist()
        return EpochTotals(
            loss_sum, correct, seen, seen - seen_before, ep.seconds_before, time.perf_counter() - ep.started, ep.started
        )

    def after_step(
        self,
        gstep: int,
        st: EpochState,
        state: TrainState,
        epoch: int,
        gens: resume.EpochGenerators,
        desc: str,
        bar: Any,
        stop: StopSignals,
    ) -> bool:
        """After each optimizer step: host-only work unless this is a log or checkpoint point. Under
        torchrun the stop decision needs the other processes, so it is taken at those points only.
        Returns True to stop (a checkpoint has then been written where the epoch stands)."""
        cfg = self.cfg
        log_point = gstep % cfg.log_every == 0
        ckpt_point = bool(cfg.checkpoint_every) and gstep % cfg.checkpoint_every == 0
        stopping = bool(stop)
        if self.dinfo.enabled:
            stopping = (log_point or ckpt_point) and any_true(stopping, self.device)
        mid_epoch = st.batches_done < len(self.train_loader)
        stopping = stopping and mid_epoch  # a stop on the last step ends the epoch first
        if log_point or ckpt_point or stopping:
            loss_sum, correct = self.read_sums(desc)
            if st.seen:
                bar.set_postfix(
                    loss=f"{loss_sum / st.seen:.3f}",
                    acc=f"{correct / st.seen:.3f}",
                    lr=f"{base_lr(self.optimizer):.2g}",
                )
            if (stopping or ckpt_point) and mid_epoch:
                position = resume.capture_position(st, gstep, (loss_sum, correct), gens, self.device)
                self.folder.save(
                    self.checkpoint(state, epoch, state.rows[-1] if state.rows else {}, True, position), "last.pt"
                )
        return stopping

    def read_sums(self, desc: str) -> tuple[float, float]:
        """The running loss and number correct (a host sync); every process stops if a loss was not finite."""
        loss_sum, correct, bad = self.step.read()
        if any_true(bad >= 0, self.device):
            where = f"step {bad}" if bad >= 0 else "a step of another process"
            raise UserError(
                f"loss is not finite at {desc}, {where}: training diverged (lower --lr?); "
                f"the last checkpoint written before it, if any, is kept in {self.cfg.out}"
            )
        return loss_sum, correct

    def evaluate(self, progress: bool, ten_crop: bool = False, test: bool = False) -> EvalResult:
        loader = self.test_loader if test else self.val_loader
        assert loader is not None
        return evaluate_model(
            self.model,
            loader,
            self.transform,
            self.classes,
            device=self.device,
            precision=self.precision,
            channels_last=self.channels_last,
            progress=progress,
            prefetch=self.cfg.prefetch,
            ten_crop=ten_crop,
        )

    # ---------------------------------------------------------------------------------------- records

    def record(
        self,
        state: TrainState,
        epoch: int,
        totals: EpochTotals,
        final: EvalResult | None,
        final10: EvalResult | None,
        test: EvalResult | None = None,
    ) -> tuple[dict[str, float], bool]:
        """The epoch's row of metrics.csv, the plateau rule, the best epoch so far (and whether this is
        it), the log line."""
        row = {
            "epoch": epoch + 1,
            "lr": base_lr(self.optimizer),
            "train_loss": totals.loss_sum / max(totals.seen, 1),
            "train_top1_error": totals.error,
            "val_loss": final.loss if final else math.nan,
            "val_top1_error": final.top1_error if final else math.nan,
            "val_top5_error": final.top5_error if final else math.nan,
            "val10_top1_error": final10.top1_error if final10 else math.nan,
            "val10_top5_error": final10.top5_error if final10 else math.nan,
            "val_images": final.n if final else 0,
            "test_top1_error": test.top1_error if test else math.nan,
            "test_top5_error": test.top5_error if test else math.nan,
            "test_images": test.n if test else 0,
            "train_seconds": totals.seconds,
            "epoch_seconds": totals.seconds_before + time.perf_counter() - totals.t0,
            "elapsed_seconds": self.elapsed(state),
            "images_per_sec": totals.new / totals.pass_seconds,
        }
        state.rows.append(row)
        reduced = self.schedule.observe(row["val_top1_error"])
        improved = final is not None and final.top1_error < state.best_err
        if improved:
            state.best_err, state.best_epoch = final.top1_error, epoch + 1  # type: ignore[union-attr]
        ten = f" | ten-patch top-1 {row['val10_top1_error']:.2%}" if final10 else ""
        ten += f" | test top-1 {test.top1_error:.2%} top-{test.k} {test.top5_error:.2%}" if test else ""
        self.say(
            f"epoch {epoch + 1:3d}/{self.cfg.epochs} | lr {row['lr']:.3g} | train loss {row['train_loss']:.4f} "
            f"err {row['train_top1_error']:.2%} | val loss {row['val_loss']:.4f} top-1 {row['val_top1_error']:.2%} "
            f"top-{final.k if final else 5} {row['val_top5_error']:.2%}{ten} | {row['images_per_sec']:.0f} img/s "
            f"| {row['elapsed_seconds']:.0f}s" + (" | lr / 10" if reduced else "")
        )
        return row, improved

    def save_epoch(self, state: TrainState, epoch: int, row: dict[str, float], improved: bool) -> None:
        """last.pt every epoch, best.pt when the epoch improved, metrics.csv and curves.png (one process
        writes; the others hold the same weights)."""
        self.folder.save(self.checkpoint(state, epoch + 1, row, full=True), "last.pt")
        if improved:
            self.folder.save(self.checkpoint(state, epoch + 1, row, full=False), "best.pt")
        self.folder.end_epoch(state.rows, f"{self.cfg.model} on {self.cfg.data}")

    def checkpoint(
        self,
        state: TrainState,
        epoch: int,
        metrics: dict[str, float],
        full: bool,
        position: dict[str, Any] | None = None,
    ) -> CheckpointRecord:
        """``epoch`` completed epochs; ``full``: with the optimizer and the progress (last.pt);
        ``position``: where a checkpoint written mid-epoch stands."""
        return CheckpointRecord(
            model={k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            model_name=self.cfg.model,
            model_options=self.model_options,
            num_classes=len(self.classes),
            classes=self.classes,
            class_names=list(getattr(self.train_ds, "meta", {}).get("class_names", self.classes)),
            eval_transform=self.transform.to_dict(),
            config=self.resolved,
            environment=self.env,
            epoch=epoch,
            metrics=metrics,
            init_loaded=sorted(self.loaded) if self.loaded else None,
            optimizer=self.optimizer.state_dict() if full else None,
            train_state=state.to_checkpoint(self.schedule, self.scaler, self.elapsed(state), position)
            if full
            else None,
        )

    def elapsed(self, state: TrainState) -> float:
        return state.elapsed_before + time.perf_counter() - self.t_start

    def finish(
        self, state: TrainState, final: EvalResult | None, final10: EvalResult | None, test: EvalResult | None = None
    ) -> TrainResult:
        """The confusion matrix of the last evaluation, and what the run did."""
        shown = test or final10 or final
        if shown is not None and self.dinfo.is_main:
            how = "test split" if test else "ten-patch" if final10 else "centre-crop"
            plot_confusion(
                shown,
                self.folder.out / "confusion.png",
                f"{self.cfg.model}, epoch {state.rows[-1]['epoch']} ({how}): "
                f"top-1 error {shown.top1_error:.2%}, top-{shown.k} error {shown.top5_error:.2%}",
            )
        test_ds = self.test_loader.dataset if self.test_loader is not None else None
        skipped = (
            list(getattr(self.train_ds, "skipped", []))
            + list(getattr(self.val_ds, "skipped", []))
            + list(getattr(test_ds, "skipped", []))
            + self.train_loader.skipped
        )
        return TrainResult(
            self.folder.out,
            state.rows,
            state.best_err,
            state.best_epoch,
            final,
            self.elapsed(state),
            skipped,
            final10,
            test,
        )


def setup(cfg: TrainConfig, dinfo: DistInfo, folder: RunFolder, say: Callable[[str], None]) -> Run:
    """Device, data, model (with --init or the resumed run's frozen layers), optimizer, DDP or compile
    wrapping, loaders and the step: a ``Run`` ready to train. The order matters for exact resume:
    the weights are initialised after the data is built (see the seeding comment)."""
    device = pick_device(cfg.device, dinfo.local_rank)
    select_device(device)  # cuda:N: streams and graphs on N, not on device 0
    keep_freed_memory()  # no page faults on large activations every step (see runtime.py)
    check_fast_paths(cfg, device, dinfo)
    precision = resolve_precision(cfg.precision, device)
    apply_kernel_settings(
        kernel_settings(device, deterministic=cfg.deterministic, tf32=cfg.tf32, cudnn_benchmark=cfg.cudnn_benchmark)
    )
    t_start = time.perf_counter()

    train_ds, val_ds, classes, transform = build_data(cfg)
    source = init_source(cfg) if cfg.init and not cfg.resume else None
    if source is not None:  # the eval transform follows the source's normalisation
        transform = _source_normalisation(transform, EvalTransform.from_dict(source["eval_transform"]))
    # Seeded after the data is built: decoding a folder for the first time draws from the global
    # generator (DataLoader), reading it from the cache does not, and the weights must not care.
    seed_everything(cfg.seed)
    # with --init, the source's architecture options (its lrn_scale, widths, ...) unless overridden
    inherited = {k: v for k, v in (source or {}).get("model_options", {}).items() if k != "in_chans"}
    model_options = {"in_chans": transform.channels, **inherited, **cfg.model_options}
    model = create_model(cfg.model, num_classes=len(classes), **model_options)
    model.to(device)
    channels_last = cfg.channels_last and device.type != "mps"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    check_input_size(model, cfg, transform)
    resume_ck = folder.resume_checkpoint() if cfg.resume else None
    loaded: set[str] | None = None
    if source is not None:
        loaded = load_init(model, source, cfg, say)
    elif resume_ck is not None and cfg.init:  # a fine-tuning run resumed: the same frozen layers and groups
        freeze_layers(model, cfg, say)
        loaded = set(resume_ck.get("init_loaded", []))
    optimizer = make_optimizer(cfg, model, device, loaded)
    net = wrap_for_processes(model, dinfo, device, cfg.ddp_grad_compression)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16" and device.type == "cuda")
    step = TrainStep(net, model, optimizer, scaler, cfg, device, precision)
    micro_batch = cfg.batch_size // (dinfo.world_size * cfg.accumulate)
    full_shape = (micro_batch, transform.channels, transform.input_size, transform.input_size)
    if cfg.compile:  # full batches compiled, an epoch's short last batch eager (no recompilation)
        step.accelerate(
            torch.compile(net, mode=None if cfg.compile_mode == "default" else cfg.compile_mode), full_shape
        )
    if cfg.cuda_graphs:  # captured now, before the Prefetcher below starts its threads
        step.capture_graph(full_shape, channels_last)

    shard = dict(rank=dinfo.rank, world_size=dinfo.world_size)
    train_loader = BatchLoader(train_ds, micro_batch, shuffle=True, seed=cfg.seed, workers=cfg.workers, **shard)
    val_loader = BatchLoader(val_ds, max(cfg.batch_size, 256), workers=cfg.workers, pad_shards=False, **shard)
    test_ds = build_test(cfg, classes, transform)
    test_loader = (
        None
        if test_ds is None
        else BatchLoader(test_ds, max(cfg.batch_size, 256), workers=cfg.workers, pad_shards=False, **shard)
    )
    if len(train_loader) == 0:
        raise UserError(f"--data {cfg.data}: no training images")
    batches = Prefetcher(train_loader, device, depth=cfg.prefetch, threads=max(1, min(cfg.workers, 4)))
    augment = TrainAugment(
        cfg.random_crop,
        cfg.translate,
        cfg.flip,
        cfg.pca_lighting,
        cfg.pca_lighting_form,
        affine_scale=cfg.affine_scale,
        affine_squeeze=cfg.affine_squeeze,
        affine_shear=cfg.affine_shear,
    )
    if cfg.pca_lighting > 0:
        augment.eigval, augment.eigvec = rgb_eigen(train_ds, transform.channels)
    return Run(
        cfg,
        dinfo,
        folder,
        device,
        precision,
        channels_last,
        train_ds,
        val_ds,
        classes,
        transform,
        model,
        model_options,
        loaded,
        optimizer,
        scaler,
        step,
        train_loader,
        val_loader,
        test_loader,
        batches,
        LRSchedule(cfg, -(-len(train_loader) // cfg.accumulate)),
        augment,
        resume_ck,
        t_start,
        say,
    )


def wrap_for_processes(model: nn.Module, dinfo: DistInfo, device: torch.device, compression: str) -> nn.Module:
    """The model as the step calls it: under torchrun, DDP (gradients averaged during backward),
    its buckets as views of the gradients (no copy per step), and with ``compression="bf16"`` the
    gradients all-reduced in bf16 (half the bytes: 122 MB instead of 244 MB per step for AlexNet)."""
    if not dinfo.enabled:
        return model
    net = DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None, gradient_as_bucket_view=True
    )
    if compression == "bf16":
        net.register_comm_hook(None, default_hooks.bf16_compress_hook)
    return net


def _source_normalisation(transform: EvalTransform, source: EvalTransform) -> EvalTransform:
    """A fine-tuning run normalises as its source did (its mean and std, its mean image resized)."""
    mimage = source.mean_image
    if mimage is not None and mimage.shape[-1] != transform.image_size:
        mimage = torch.nn.functional.interpolate(
            mimage[None], size=(transform.image_size,) * 2, mode="bilinear", antialias=True, align_corners=False
        )[0]
    return dataclasses.replace(transform, mean=source.mean, std=source.std, mean_image=mimage)
