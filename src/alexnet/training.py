"""The training loop, in one place: ``train`` joins the processes, ``fit`` reads the run top-down
(check, build, restore, then each epoch: train, evaluate, record, save), and ``train_epoch`` is one
epoch's pass over its batches (the step, the log point, the checkpoint point, the stop checks).
From ``train`` to ``loss.backward()`` are four frames: train > fit > train_epoch > TrainStep.micro.

The run's parts are built once, by keyword, into four small objects (``build``): where it runs
(``Session``), the network (``Network``), its optimisation (``Optimisation``) and its data
(``Inputs``). The pieces themselves live in ``engine/``.

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
from .data.loader import BatchLoader, ResizedCrops
from .data.pipeline import Prefetcher, gather_threads
from .data.transforms import EvalTransform, TrainAugment, resize_mean_image
from .distributed import DistInfo, all_reduce_sum, any_true, cleanup, join_processes
from .engine import resume
from .engine.checks import (
    available_memory,
    check_batch_split,
    check_fast_paths,
    check_input_size,
    check_memory,
    check_out_outside_data,
    decode_on_device,
)
from .engine.data import build_data, build_test, make_augment
from .engine.ema import WeightEMA, effective_decay
from .engine.evaluation import EvalResult, evaluate_model, plot_confusion
from .engine.finetune import freeze_layers, init_source, load_init
from .engine.mixing import BatchMix, make_mix
from .engine.optim import base_lr, make_optimizer
from .engine.resume import TrainState
from .engine.runfolder import RunFolder
from .engine.schedule import LRSchedule
from .engine.signals import StopSignals
from .engine.step import EpochState, TrainStep
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
    slow_half_precision,
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


# -- the run's parts ------------------------------------------------------------------------------------
@dataclass
class Session:
    """Where and how the run happens: its config, processes, folder, device and precision, its log,
    and what its checkpoints record of both (``resolved``, ``env``: set when it starts)."""

    cfg: TrainConfig
    dinfo: DistInfo
    folder: RunFolder
    device: torch.device
    precision: str
    say: Callable[[str], None]
    t_start: float
    resume_ck: dict[str, Any] | None = None  # last.pt, read before the optimizer is built, until restored
    resolved: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def elapsed(self, state: TrainState) -> float:
        return state.elapsed_before + time.perf_counter() - self.t_start


@dataclass
class Network:
    model: nn.Module
    options: dict[str, Any]  # the builder options it was made with (in checkpoints)
    loaded: set[str] | None  # the parameters --init loaded
    channels_last: bool
    ema: WeightEMA | None = None  # --model-ema: the moving average of the weights


@dataclass
class Optimisation:
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    schedule: LRSchedule
    step: TrainStep


@dataclass
class Inputs:
    train_ds: Any
    val_ds: Any
    classes: list[str]
    transform: EvalTransform
    augment: TrainAugment
    train_loader: BatchLoader
    val_loader: BatchLoader
    test_loader: BatchLoader | None  # with val_split: the dataset's test split
    batches: Prefetcher  # the training batches, gathered and copied ahead of the step
    mix: BatchMix | None = None  # MixUp / CutMix on each augmented batch

    @property
    def boxes(self) -> bool:
        """RandomResizedCrop on the batch (its boxes drawn per batch by the loader), not where decoded."""
        return self.train_loader.crops is not None and not getattr(self.train_ds, "crops_at_decode", False)


@dataclass
class Parts:
    session: Session
    net: Network
    opt: Optimisation
    data: Inputs


@dataclass
class Evaluations:
    """An epoch's evaluations: the centre crop (``val``), the ten patches and the test split (the last epoch)."""

    val: EvalResult | None = None
    ten: EvalResult | None = None
    test: EvalResult | None = None
    ema: EvalResult | None = None  # --model-ema: the averaged weights on the centre crop, with ``val``
    ema_test: EvalResult | None = None  # and on the test split, with ``test``


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


# -- the loop ------------------------------------------------------------------------------------------
def train(cfg: TrainConfig, *, progress: bool = True, log: Callable[[str], None] | None = None) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.data`` into the run folder ``cfg.out``; returns the metrics.

    Writes ``config.toml``, ``metrics.csv``, ``curves.png``, ``last.pt`` (every epoch, with the
    optimizer state) and ``best.pt`` (lowest val top-1 error), each checkpoint atomically.
    Ctrl-C keeps the last completed epoch's ``last.pt``; ``resume=True`` continues from it.
    One code path for one process and for each process of a torchrun job.
    """
    dinfo = join_processes(cfg.device)
    try:
        return fit(cfg, dinfo, progress=progress and dinfo.is_main, log=log)
    finally:
        cleanup(dinfo)


def fit(cfg: TrainConfig, dinfo: DistInfo, *, progress: bool, log: Callable[[str], None] | None) -> TrainResult:
    """The run, top-down: check, build, restore, then for each epoch train, evaluate, record, save."""
    say = (log or (lambda s: print(s, file=sys.stderr))) if dinfo.is_main else (lambda s: None)
    cfg, folder = check(cfg, dinfo, say)  # the run folder is this process's from here on
    try:
        p = build(cfg, dinfo, folder, say)
        try:
            state = restore(p) if cfg.resume else TrainState()
            start(p)
            evals = Evaluations()
            try:
                with StopSignals() as stop:
                    for epoch in range(state.start_epoch, cfg.epochs):
                        totals = train_epoch(p, epoch, state, stop, progress)
                        reached = 0 < cfg.target_train_error and totals.error <= cfg.target_train_error
                        last = epoch + 1 == cfg.epochs or reached
                        evals = evaluate_epoch(p, epoch, last, progress)
                        row, improved = record(p, state, epoch, totals, evals)
                        save_epoch(p, state, epoch, row, improved)
                        if any_true(bool(stop), p.session.device):
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
            return finish(p, state, evals)
        finally:
            p.data.batches.close()
    finally:
        folder.close()


def train_epoch(p: Parts, epoch: int, state: TrainState, stop: StopSignals, progress: bool) -> EpochTotals:
    """One epoch (the rest of it after a mid-epoch checkpoint), summed over the processes. Nothing in
    the pass waits for the device but the log and checkpoint points, every ``log_every`` and
    ``checkpoint_every`` optimizer steps; under torchrun the stop decision, which needs the other
    processes, is taken at those points only."""
    s, step, data = p.session, p.opt.step, p.data
    cfg, dinfo, device = s.cfg, s.dinfo, s.device
    # Every random draw of an epoch depends on (seed, epoch) only, so a resumed run repeats it.
    # (Each process of a torchrun job draws its own dropout masks and crops.) The distortions and the
    # colour noise draw from a generator of their own: an arm with colour noise has the same crops.
    torch.manual_seed(cfg.seed * 1_000_003 + epoch + 100_000_007 * dinfo.rank)
    gens = resume.EpochGenerators(
        crops=torch.Generator(device=device).manual_seed(cfg.seed * 7919 + epoch + 100_000_007 * dinfo.rank),
        noise=torch.Generator(device=device).manual_seed(cfg.seed * 6_700_417 + epoch + 100_000_007 * dinfo.rank + 1),
    )
    ep = EpochState()
    step.reset(state.global_step)
    if state.partial is not None:
        ep = resume.restore_position(
            state.partial, step, gens, state.global_step, dinfo, device, where=f"{s.folder.out}/last.pt", say=s.say
        )
        state.partial = None
    data.train_loader.set_epoch(epoch, ep.batches_done)
    seen_before, n_batches, acc = ep.seen, len(data.train_loader), cfg.accumulate
    ep.started = time.perf_counter()
    desc = f"epoch {epoch + 1}/{cfg.epochs}"
    n_images = data.train_loader.num_images
    bar = tqdm(
        total=n_images,
        initial=min(n_images, ep.batches_done * data.train_loader.batch_size),
        desc=desc,
        unit="img",
        disable=not progress or None,
        leave=False,
        dynamic_ncols=True,
    )
    with bar:
        for x, y in data.batches:
            # micro-batch k of an optimizer step's group (all groups full but maybe the epoch's last)
            k = ep.batches_done % acc
            group = min(acc, n_batches - (ep.batches_done - k))
            if k == 0:
                step.begin(p.opt.schedule(state.global_step))
            boxes = data.train_loader.boxes_for(ep.batches_done, data.transform.image_size) if data.boxes else None
            x = data.augment(x, data.transform, gens.crops, p.net.channels_last, gens.noise, boxes)
            if data.mix is not None:  # MixUp / CutMix: soft targets (drawn from the saved global generator)
                x, y = data.mix(x, y)
            step.micro(x, y, group, last=k == group - 1)
            ep.batches_done += 1
            ep.seen += y.shape[0]
            bar.update(y.shape[0])
            if k != group - 1:
                continue
            step.update()
            state.global_step += 1
            if p.net.ema is not None:  # queued on the device, no wait
                p.net.ema.after_step(p.net.model, state.global_step, p.opt.schedule.warming(state.global_step - 1))
            # the log point and the checkpoint point: the only host syncs of the pass
            log_point = state.global_step % cfg.log_every == 0
            ckpt_point = bool(cfg.checkpoint_every) and state.global_step % cfg.checkpoint_every == 0
            stopping = bool(stop)
            if dinfo.enabled:
                stopping = (log_point or ckpt_point) and any_true(stopping, device)
            mid_epoch = ep.batches_done < n_batches
            stopping = stopping and mid_epoch  # a stop on the last step ends the epoch first
            if not (log_point or ckpt_point or stopping):
                continue
            loss_sum, correct = read_sums(p, desc)
            if ep.seen:
                lr = f"{base_lr(p.opt.optimizer):.2g}"
                shown = {"loss": f"{loss_sum / ep.seen:.3f}", "acc": f"{correct / ep.seen:.3f}", "lr": lr}
                if cfg.clip_grad_norm > 0:  # the host already waited for the sums at this point
                    shown["grad_norm"] = f"{float(step.grad_norm):.3g}"
                bar.set_postfix(**shown)
            if (stopping or ckpt_point) and mid_epoch:
                position = resume.capture_position(ep, state.global_step, (loss_sum, correct), gens, device)
                row = state.rows[-1] if state.rows else {}
                s.folder.save(checkpoint(p, state, epoch, row, full=True, position=position), "last.pt")
            if stopping:  # a checkpoint has been written where the epoch stands
                raise KeyboardInterrupt
    loss_sum, correct = read_sums(p, desc)
    (totals,) = all_reduce_sum(torch.tensor([loss_sum, correct, ep.seen], dtype=torch.float64, device=device))
    loss_sum, correct, seen = totals.tolist()
    return EpochTotals(
        loss_sum=loss_sum,
        correct=correct,
        seen=seen,
        new=seen - seen_before,
        seconds_before=ep.seconds_before,
        pass_seconds=time.perf_counter() - ep.started,
        t0=ep.started,
    )


def read_sums(p: Parts, desc: str) -> tuple[float, float]:
    """The running loss and number correct (a host sync); every process stops if a loss was not finite."""
    loss_sum, correct, bad = p.opt.step.read()
    if any_true(bad >= 0, p.session.device):
        where = f"step {bad}" if bad >= 0 else "a step of another process"
        raise UserError(
            f"loss is not finite at {desc}, {where}: training diverged (lower --lr?); "
            f"the last checkpoint written before it, if any, is kept in {p.session.cfg.out}"
        )
    return loss_sum, correct


def evaluate_epoch(p: Parts, epoch: int, last: bool, progress: bool) -> Evaluations:
    """The epoch's evaluations: the centre crop every ``eval_every`` epochs and after the last; the
    paper's ten-patch test in its own columns (selection and curves use the centre crop); and with a
    held-out validation split, the test split, seen once, by the final weights."""
    cfg, ema = p.session.cfg, p.net.ema
    val = (epoch + 1) % cfg.eval_every == 0 or last
    test = last and p.data.test_loader is not None
    return Evaluations(
        val=evaluate(p, progress) if val else None,
        ten=evaluate(p, progress, ten_crop=True) if cfg.ten_crop_eval and last else None,
        test=evaluate(p, progress, test=True) if test else None,
        ema=evaluate(p, progress, model=ema.module) if val and ema is not None else None,
        ema_test=evaluate(p, progress, test=True, model=ema.module) if test and ema is not None else None,
    )


def evaluate(
    p: Parts, progress: bool, ten_crop: bool = False, test: bool = False, model: nn.Module | None = None
) -> EvalResult:
    """The run's weights (or ``model``: the EMA's) on the validation or test split."""
    loader = p.data.test_loader if test else p.data.val_loader
    assert loader is not None
    return evaluate_model(
        model if model is not None else p.net.model,
        loader,
        p.data.transform,
        p.data.classes,
        device=p.session.device,
        precision=p.session.precision,
        channels_last=p.net.channels_last,
        progress=progress,
        prefetch=p.session.cfg.prefetch,
        ten_crop=ten_crop,
    )


# -- before and after the epochs ---------------------------------------------------------------------
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


def restore(p: Parts) -> TrainState:
    """The run so far, from ``last.pt``."""
    s = p.session
    assert s.resume_ck is not None
    state, p.data.transform = resume.restore(
        s.resume_ck,
        cfg=s.cfg,
        classes=p.data.classes,
        model=p.net.model,
        optimizer=p.opt.optimizer,
        schedule=p.opt.schedule,
        scaler=p.opt.scaler,
        steps_per_epoch=p.opt.schedule.steps_per_epoch,
        batches_per_epoch=len(p.data.train_loader),
        ema=p.net.ema,
        out=s.folder.out,
        say=s.say,
    )
    s.resume_ck = None
    return state


def start(p: Parts) -> None:
    """config.toml, environment.json, TensorBoard; the banner; the constants on the device once."""
    s, d = p.session, p.data
    s.resolved = s.cfg.to_dict()
    s.env = environment() | {"device": str(s.device), "processes": str(s.dinfo.world_size), "precision": s.precision}
    s.folder.start(s.resolved, s.env)
    t = d.transform
    held = f" (held out: {s.cfg.val_split:g} of the training split)" if d.test_loader is not None else ""
    test = f" / {len(d.test_loader.dataset):,} test" if d.test_loader is not None else ""  # type: ignore[arg-type]
    s.say(
        f"{s.cfg.model}: {count_params(p.net.model):,} parameters | {len(d.train_ds):,} train / "
        f"{len(d.val_ds):,} val{held}{test} images, {len(d.classes)} classes | input "
        f"{t.channels}x{t.input_size}x{t.input_size} | {s.device}, {s.precision}"
    )
    d.transform.place(s.device)  # constants on the device once, not in the steps
    d.augment.place(s.device)


def record(
    p: Parts, state: TrainState, epoch: int, totals: EpochTotals, evals: Evaluations
) -> tuple[dict[str, float], bool]:
    """The epoch's row of metrics.csv, the plateau rule, the best epoch so far (and whether this is
    it), the log line."""
    final, final10, test = evals.val, evals.ten, evals.test
    row = {
        "epoch": epoch + 1,
        "lr": base_lr(p.opt.optimizer),
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
        "elapsed_seconds": p.session.elapsed(state),
        "images_per_sec": totals.new / totals.pass_seconds,
        "grad_norm": float(p.opt.step.grad_norm) if p.session.cfg.clip_grad_norm > 0 else math.nan,
        "ema_val_loss": evals.ema.loss if evals.ema else math.nan,
        "ema_val_top1_error": evals.ema.top1_error if evals.ema else math.nan,
        "ema_val_top5_error": evals.ema.top5_error if evals.ema else math.nan,
        "ema_test_top1_error": evals.ema_test.top1_error if evals.ema_test else math.nan,
        "ema_test_top5_error": evals.ema_test.top5_error if evals.ema_test else math.nan,
    }
    state.rows.append(row)
    reduced = p.opt.schedule.observe(row["val_top1_error"], epoch)
    improved = final is not None and final.top1_error < state.best_err
    if improved:
        state.best_err, state.best_epoch = final.top1_error, epoch + 1  # type: ignore[union-attr]
    ten = f" | ten-patch top-1 {row['val10_top1_error']:.2%}" if final10 else ""
    ten += f" | test top-1 {test.top1_error:.2%} top-{test.k} {test.top5_error:.2%}" if test else ""
    ten += f" | EMA val top-1 {evals.ema.top1_error:.2%}" if evals.ema else ""
    ten += f" | EMA test top-1 {evals.ema_test.top1_error:.2%}" if evals.ema_test else ""
    p.session.say(
        f"epoch {epoch + 1:3d}/{p.session.cfg.epochs} | lr {row['lr']:.3g} | train loss {row['train_loss']:.4f} "
        f"err {row['train_top1_error']:.2%} | val loss {row['val_loss']:.4f} top-1 {row['val_top1_error']:.2%} "
        f"top-{final.k if final else 5} {row['val_top5_error']:.2%}{ten} | {row['images_per_sec']:.0f} img/s "
        f"| {row['elapsed_seconds']:.0f}s" + (" | lr / 10" if reduced else "")
    )
    return row, improved


def save_epoch(p: Parts, state: TrainState, epoch: int, row: dict[str, float], improved: bool) -> None:
    """last.pt every epoch, best.pt when the epoch improved, metrics.csv and curves.png (one process
    writes; the others hold the same weights)."""
    folder, cfg = p.session.folder, p.session.cfg
    folder.save(checkpoint(p, state, epoch + 1, row, full=True), "last.pt")
    if improved:
        folder.save(checkpoint(p, state, epoch + 1, row, full=False), "best.pt")
    folder.end_epoch(state.rows, f"{cfg.model} on {cfg.data}")


def checkpoint(
    p: Parts,
    state: TrainState,
    epoch: int,
    metrics: dict[str, float],
    *,
    full: bool,
    position: dict[str, Any] | None = None,
) -> CheckpointRecord:
    """``epoch`` completed epochs; ``full``: with the optimizer and the progress (last.pt);
    ``position``: where a checkpoint written mid-epoch stands."""
    s, net, opt, data = p.session, p.net, p.opt, p.data
    return CheckpointRecord(
        model={k: v.detach().cpu() for k, v in net.model.state_dict().items()},
        model_name=s.cfg.model,
        model_options=net.options,
        model_ema=net.ema.state() if net.ema is not None else None,
        num_classes=len(data.classes),
        classes=data.classes,
        class_names=list(getattr(data.train_ds, "meta", {}).get("class_names", data.classes)),
        eval_transform=data.transform.to_dict(),
        config=s.resolved,
        environment=s.env,
        epoch=epoch,
        metrics=metrics,
        init_loaded=sorted(net.loaded) if net.loaded else None,
        optimizer=opt.optimizer.state_dict() if full else None,
        train_state=(
            state.to_checkpoint(opt.schedule, opt.scaler, s.elapsed(state), position, net.ema) if full else None
        ),
    )


def finish(p: Parts, state: TrainState, evals: Evaluations) -> TrainResult:
    """The confusion matrix of the last evaluation, and what the run did."""
    s, d = p.session, p.data
    shown = evals.test or evals.ten or evals.val
    if shown is not None and s.dinfo.is_main:
        how = "test split" if evals.test else "ten-patch" if evals.ten else "centre-crop"
        plot_confusion(
            shown,
            s.folder.out / "confusion.png",
            f"{s.cfg.model}, epoch {state.rows[-1]['epoch']} ({how}): "
            f"top-1 error {shown.top1_error:.2%}, top-{shown.k} error {shown.top5_error:.2%}",
        )
    test_ds = d.test_loader.dataset if d.test_loader is not None else None
    skipped = (
        list(getattr(d.train_ds, "skipped", []))
        + list(getattr(d.val_ds, "skipped", []))
        + list(getattr(test_ds, "skipped", []))
        + d.train_loader.skipped
    )
    return TrainResult(
        out=s.folder.out,
        metrics=state.rows,
        best_top1_error=state.best_err,
        best_epoch=state.best_epoch,
        final=evals.val,
        seconds=s.elapsed(state),
        skipped=skipped,
        final_ten_crop=evals.ten,
        test=evals.test,
    )


def build(cfg: TrainConfig, dinfo: DistInfo, folder: RunFolder, say: Callable[[str], None]) -> Parts:
    """Device, data, model (with --init or the resumed run's frozen layers), optimizer, DDP or compile
    wrapping, loaders and the step: the run's parts, ready to train. The order matters for exact resume:
    the weights are initialised after the data is built (see the seeding comment)."""
    device = pick_device(cfg.device, dinfo.local_rank, dinfo.world_size)
    select_device(device)  # cuda:N: streams and graphs on N, not on device 0
    keep_freed_memory()  # no page faults on large activations every step (see runtime.py)
    check_fast_paths(cfg, device, dinfo)
    precision = resolve_precision(cfg.precision, device)
    if note := slow_half_precision(precision, device):
        say(note)
    apply_kernel_settings(
        kernel_settings(device, deterministic=cfg.deterministic, tf32=cfg.tf32, cudnn_benchmark=cfg.cudnn_benchmark)
    )
    t_start = time.perf_counter()

    train_ds, val_ds, classes, transform = build_data(cfg)
    check_memory(cfg, transform, cfg.batch_size // (dinfo.world_size * cfg.accumulate), available_memory())
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
    ema = make_ema(cfg, model, say)  # a copy of the model as it starts, before any wrapping
    net = wrap_for_processes(model, dinfo, device, cfg.ddp_grad_compression)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16" and device.type == "cuda")
    step = TrainStep(
        net=net, model=model, optimizer=optimizer, scaler=scaler, cfg=cfg, device=device, precision=precision
    )
    micro_batch = cfg.batch_size // (dinfo.world_size * cfg.accumulate)
    full_shape = (micro_batch, transform.channels, transform.input_size, transform.input_size)
    if cfg.compile:  # full batches compiled, an epoch's short last batch eager (no recompilation)
        step.accelerate(
            torch.compile(net, mode=None if cfg.compile_mode == "default" else cfg.compile_mode), full_shape
        )
    if cfg.cuda_graphs:  # captured now, before the Prefetcher below starts its threads
        step.capture_graph(full_shape, channels_last)

    shard: dict[str, Any] = dict(rank=dinfo.rank, world_size=dinfo.world_size)
    train_loader = BatchLoader(train_ds, micro_batch, shuffle=True, seed=cfg.seed, workers=cfg.workers, **shard)
    if cfg.random_resized_crop:
        train_loader.crops = ResizedCrops(tuple(cfg.rrc_scale), tuple(cfg.rrc_ratio), transform.crop_size)  # type: ignore[arg-type]
    eval_batch = eval_batch_size(cfg.batch_size, dinfo.world_size)
    val_loader = BatchLoader(val_ds, eval_batch, workers=cfg.workers, pad_shards=False, **shard)
    test_ds = build_test(cfg, classes, transform)
    decode_on_device(cfg, [train_ds, val_ds, test_ds])  # --decode gpu
    test_loader = (
        None if test_ds is None else BatchLoader(test_ds, eval_batch, workers=cfg.workers, pad_shards=False, **shard)
    )
    if len(train_loader) == 0:
        raise UserError(f"--data {cfg.data}: no training images")
    batches = Prefetcher(train_loader, device, depth=cfg.prefetch, threads=gather_threads())
    augment = make_augment(cfg, train_ds, transform.channels)
    return Parts(
        session=Session(
            cfg=cfg,
            dinfo=dinfo,
            folder=folder,
            device=device,
            precision=precision,
            say=say,
            t_start=t_start,
            resume_ck=resume_ck,
        ),
        net=Network(model=model, options=model_options, loaded=loaded, channels_last=channels_last, ema=ema),
        opt=Optimisation(
            optimizer=optimizer,
            scaler=scaler,
            schedule=LRSchedule(cfg, -(-len(train_loader) // cfg.accumulate)),
            step=step,
        ),
        data=Inputs(
            train_ds=train_ds,
            val_ds=val_ds,
            classes=classes,
            transform=transform,
            augment=augment,
            train_loader=train_loader,
            val_loader=val_loader,
            test_loader=test_loader,
            batches=batches,
            mix=make_mix(cfg.mixup_alpha, cfg.cutmix_alpha, len(classes)),
        ),
    )


def make_ema(cfg: TrainConfig, model: nn.Module, say: Callable[[str], None]) -> WeightEMA | None:
    """--model-ema's average of ``model``, with torchvision's decay adjustment (said in the log)."""
    if not cfg.model_ema:
        return None
    decay = effective_decay(cfg.model_ema_decay, cfg.model_ema_steps, cfg.batch_size, cfg.epochs)
    say(
        f"EMA of the weights: every {cfg.model_ema_steps} optimizer steps, decay {decay:.6g} per update "
        f"(--model-ema-decay {cfg.model_ema_decay:g} adjusted to a batch of {cfg.batch_size} over "
        f"{cfg.epochs} epochs, torchvision's rule); a copy of the weights during the warm-up"
    )
    return WeightEMA(model, decay, cfg.model_ema_steps)


EVAL_BATCH = (256, 512)  # per process: at least (small training batches evaluate faster), at most


def eval_batch_size(batch_size: int, world_size: int) -> int:
    """Images per evaluation batch in each process: its share of the training batch, within
    ``EVAL_BATCH`` (the bound keeps every launch, ten-crop's patches included, far below 2^31
    elements: 512 AlexNet images are 149M values at the first LRN)."""
    low, high = EVAL_BATCH
    return min(max(batch_size // max(world_size, 1), low), high)


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
    mimage = None if source.mean_image is None else resize_mean_image(source.mean_image, transform.image_size)
    return dataclasses.replace(transform, mean=source.mean, std=source.std, mean_image=mimage)
