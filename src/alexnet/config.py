"""The training configuration: one typed dataclass, filled from defaults, then a recipe file
(TOML), then command-line flags. Unknown keys and wrong types are errors that name the key."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ._toml import tomllib
from .errors import UserError

# Upper (and lower) bounds of the numeric keys, checked by ``validate`` before anything is allocated: a
# size past these cannot fit any machine (an image side of 10^6 is 3 TB a batch of one), a count or depth
# past them hangs or overflows (a seed must fit the generators' 64 bits after the per-epoch offsets).
BOUNDS: dict[str, tuple[float, float]] = {
    "epochs": (1, 1e5),
    "batch_size": (1, 2**20),
    "image_size": (1, 4096),
    "crop_size": (1, 4096),
    "pad": (0, 1024),
    "translate": (0, 1024),
    "prefetch": (1, 64),
    "workers": (0, 256),
    "log_every": (1, 2**31),
    "eval_every": (1, 2**31),
    "step_size": (1, 1e6),
    "accumulate": (1, 2**16),
    "checkpoint_every": (0, 2**31),
    "seed": (0, 2**31 - 1),
    "cache_limit_gb": (1e-6, 1e6),
    "max_train_images": (1, 2**40),
    "max_val_images": (1, 2**40),
    "warmup_epochs": (0, 1e5),
    "plateau_patience": (0, 1e6),
    "max_reductions": (0, 1000),
    "pca_lighting": (0, 1e3),
    "plateau_threshold": (-1, 1),
    "mixup_alpha": (0, 1e3),
    "cutmix_alpha": (0, 1e3),
    "model_ema_steps": (1, 2**31),
}
AUTO_AUGMENT = ("ta_wide", "ra", "imagenet", "augmix")  # torchvision's reference script's policy names
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")  # torchvision's --interpolation names (evaluate's)
MAX_RECIPE_BYTES = 1 << 20  # a recipe is a few hundred bytes; a megabyte is a mistake (or an attack)
MAX_SHOWN = 60  # characters of a bad value or key in an error line


def _shown(v: Any) -> str:
    """``repr(v)`` cut to MAX_SHOWN characters: an error line names the value, it does not echo 50 MB."""
    text = repr(v)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _opt(default: Any = None, help: str = "", *, factory: Any = None) -> Any:
    """A TrainConfig field: its default (or ``factory``) and the help text of its ``--flag`` and of the
    config reference (``docs/config.md``, generated from these)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Everything a training run needs. Each field is a recipe key and a ``--flag`` of ``alexnet train``."""

    # what to train, on what, where
    model: str = _opt("cifar_18pct", "a name from `alexnet models`")
    model_options: dict[str, Any] = _opt(factory=dict, help="builder options (activation, lrn, ...)")
    data: str = _opt("", "mnist[:ROOT], cifar10[:ROOT] or an image-folder path (train/ and val/ or test/)")
    out: str = _opt("", "the run folder")
    resume: bool = _opt(False, "continue the run in `out` from its last.pt")
    init: str = _opt("", "start from trained weights: a run folder, checkpoint, export folder or hf-hub:ORG/NAME")
    freeze: str = _opt("", "with init: freeze the layers up to and including this one (features, fc6, conv3, ...)")
    lr_body: float = _opt(1.0, "with init: the learning rate of the loaded layers is this times the new layers'")
    # optimisation
    epochs: int = _opt(10, "passes over the training set")
    batch_size: int = _opt(128, "images per optimizer step, summed over every process")
    optimizer: str = _opt("sgd", "sgd | adamw")
    lr: float = _opt(0.01, "the learning rate (the peak one, after any warm-up)")
    momentum: float = _opt(0.9, "SGD's momentum (AdamW does not use it)")
    nesterov: bool = _opt(False, "SGD: Nesterov's momentum instead of the classical one")
    weight_decay: float = _opt(5e-4, "on the kernels of conv/linear layers; biases and per-map scalars are not decayed")
    weight_decay_layers: dict[str, Any] = _opt(
        factory=dict, help="per layer (its name, e.g. fc10 = 1.0): overrides weight_decay"
    )
    bias_lr_factor: float = _opt(1.0, "biases learn this many times faster (cuda-convnet's epsB / epsW)")
    label_smoothing: float = _opt(0.0, "cross-entropy label smoothing (0: off)")
    mixup_alpha: float = _opt(
        0.0, "MixUp (torchvision's): mix each batch with itself rolled by one, weight ~ Beta(this, this) (0: off)"
    )
    cutmix_alpha: float = _opt(
        0.0,
        "CutMix (torchvision's): paste a box of the rolled batch, area ~ Beta(this, this); with mixup_alpha "
        "too, one of the two per batch (0: off)",
    )
    clip_grad_norm: float = _opt(
        0.0,
        "clip the gradient's global norm (every parameter, after the average over processes and the "
        "fp16 unscaling) to this at every optimizer step (0: off)",
    )
    model_ema: bool = _opt(
        False,
        "keep an exponential moving average of the weights (torchvision's), evaluated every epoch beside "
        "them and kept in every checkpoint",
    )
    model_ema_decay: float = _opt(
        0.99998,
        "model_ema: torchvision's decay, adjusted to the run as its reference script does (the decay per "
        "update is 1 - (1 - this) x batch_size x model_ema_steps / epochs, shown in the log)",
    )
    model_ema_steps: int = _opt(32, "model_ema: optimizer steps between updates of the average")
    schedule: str = _opt("plateau", "plateau | step | multistep | cosine | linear | constant")
    warmup_epochs: float = _opt(
        0.0, "linear warm-up from lr x lr_warmup_decay to lr over this many epochs, under every schedule"
    )
    lr_warmup_decay: float = _opt(
        0.1, "warm-up: the first step's rate as a fraction of lr (torchvision's start factor)"
    )
    lr_min: float = _opt(0.0, "cosine and linear: the rate they end at (0: zero)")
    plateau_warmup: bool = _opt(
        True,
        "plateau: warm up too, and count epochs without improvement only after the warm-up (false: runs "
        "made before 2026-12-02, whose warm-up was ignored under plateau)",
    )
    step_size: int = _opt(30, "step: epochs between divisions")
    milestones: list[int] = _opt(factory=list, help="multistep: the epochs after which the rate is multiplied by gamma")
    gamma: float = _opt(0.1, "step and plateau: the factor")
    plateau_patience: int = _opt(2, "plateau: epochs without improvement before the rate is divided")
    plateau_threshold: float = _opt(0.002, "plateau: smallest drop of val top-1 error that counts as improvement")
    max_reductions: int = _opt(3, "plateau: the paper reduced the rate three times")
    # data and augmentation
    image_size: int | None = _opt(None, "stored side (shorter side resized + centre square); default: the model's")
    crop_size: int | None = _opt(None, "network input side before padding; default: the model's input size")
    pad: int = _opt(0, "zero pixels added on each side after cropping (LeNet-5: 28 -> 32)")
    random_crop: bool = _opt(True, "train on random crop_size patches (the paper's 224 of 256)")
    translate: int = _opt(0, "zero-pad by this much before the random crop (CIFAR-style shifts)")
    random_resized_crop: bool = _opt(
        False,
        "RandomResizedCrop instead of the random crop: a box of random area and aspect ratio per image, "
        "resized to crop_size (torchvision's and timm's default training crop)",
    )
    rrc_scale: list[float] = _opt(
        factory=lambda: [0.08, 1.0], help="random_resized_crop: the range of the box's area, a fraction of the image's"
    )
    rrc_ratio: list[float] = _opt(
        factory=lambda: [3 / 4, 4 / 3], help="random_resized_crop: the range of the box's width / height (log-uniform)"
    )
    flip: bool = _opt(True, "random horizontal reflections")
    auto_augment: str = _opt(
        "",
        "torchvision's automatic augmentation on each uint8 crop, one draw per image: ta_wide (TrivialAugment), "
        "ra (RandAugment), imagenet (AutoAugment's ImageNet policy), augmix; empty: off",
    )
    ra_magnitude: int = _opt(9, "auto_augment = ra: RandAugment's magnitude (0-30)")
    random_erase: float = _opt(0.0, "random erasing (torchvision's, after normalisation): its probability per image")
    pca_lighting: float = _opt(0.0, "std of the PCA colour noise's alphas (the paper's: 0.1); 0 turns it off")
    affine_scale: float = _opt(
        0.0, "LeCun et al.'s distortions: scale each image by 1 + u, u uniform in [-this, this] (0: off)"
    )
    affine_squeeze: float = _opt(0.0, "squeeze: width x (1 + v), height / (1 + v), v uniform in [-this, this] (0: off)")
    affine_shear: float = _opt(0.0, "horizontal shear x + w y, w uniform in [-this, this] (0: off)")
    pca_lighting_form: str = _opt(
        "cuda-convnet",
        "cuda-convnet (alpha x sqrt(eigenvalue) grey levels, batch / (1 + std), Krizhevsky's code) | "
        "fb.resnet (alpha x eigenvalue of [0, 1] pixels)",
    )
    normalize: str = _opt(
        "meanstd",
        "meanstd | mean | mean_image (the paper's per-pixel mean) | imagenet | lecun (LeNet-5's: "
        "background -0.1, ink 1.175) | none",
    )
    max_train_images: int | None = _opt(None, "train on a random subset of this size")
    max_val_images: int | None = _opt(None, "evaluate on a random subset of this size")
    val_split: float = _opt(
        0.0,
        "hold out this fraction of the training images (by seed) for selection, the plateau rule and "
        "best.pt; the test split is then evaluated once, at the end (0: select on the val/test split)",
    )
    workers: int = _opt(2, "loader processes for folders decoded on the fly")
    decode: str = _opt(
        "cpu",
        "JPEG shards: cpu (in the loader's workers) | gpu (a batch at a time on the CUDA device, nvJPEG; "
        "the workers only read the bytes)",
    )
    cache_limit_gb: float = _opt(4.0, "folders smaller than this (decoded) are kept in memory")
    # machinery
    seed: int = _opt(0, "seeds every random draw of the run: initial weights, data order, crops, dropout")
    device: str = _opt("auto", "auto | cpu | cuda | cuda:N | mps")
    precision: str = _opt("auto", "auto (bf16 on GPUs that have it, else fp32) | fp32 | bf16 | fp16 (autocast)")
    channels_last: bool = _opt(True, "NHWC activations: faster convolutions on CPUs and tensor cores")
    optimizer_impl: str = _opt(
        "auto", "auto (fused where torch has it) | fused | foreach | for-loop: how SGD/AdamW update"
    )
    compile: bool = _opt(False, "torch.compile the network (a minute or more of compiling first)")
    compile_mode: str = _opt("default", "default | reduce-overhead | max-autotune | max-autotune-no-cudagraphs")
    cuda_graphs: bool = _opt(False, "capture the fixed-shape forward+backward in a CUDA graph (one process, CUDA only)")
    cudnn_benchmark: bool = _opt(True, "let cuDNN time its algorithms for the fixed shapes (CUDA)")
    deterministic: bool = _opt(
        False, "deterministic GPU kernels (no cuDNN autotuning, no TF32): bitwise resume on a GPU"
    )
    tf32: bool = _opt(True, "TensorFloat-32 for fp32 matmuls and convolutions on CUDA (off under deterministic)")
    ddp_grad_compression: str = _opt(
        "none", "none | bf16: all-reduce gradients in bf16 under torchrun (half the traffic)"
    )
    prefetch: int = _opt(3, "batches gathered (and copied to the device) ahead of the step")
    log_every: int = _opt(50, "optimizer steps between reads of the running loss/accuracy (the only host syncs)")
    accumulate: int = _opt(1, "split each batch into this many sequential micro-batches (same gradients, less memory)")
    eval_every: int = _opt(1, "evaluate every N epochs (and always after the last)")
    target_train_error: float = _opt(
        0.0, "end the run after the first epoch whose training error is at most this (0: off)"
    )
    ten_crop_eval: bool = _opt(False, "the last evaluation averages the ten patches (the paper's test, §4.1)")
    checkpoint_every: int = _opt(0, "also write last.pt every N steps, mid-epoch (0: at the end of each epoch only)")

    def validate(self) -> TrainConfig:
        def bad(key: str, why: str) -> UserError:
            return UserError(f"{key.replace('_', '-')}: {why}")

        choices = {
            "optimizer": ("sgd", "adamw"),
            "schedule": ("plateau", "step", "multistep", "cosine", "linear", "constant"),
            "normalize": ("meanstd", "mean", "mean_image", "imagenet", "lecun", "none"),
            "pca_lighting_form": ("cuda-convnet", "fb.resnet"),
            "precision": ("auto", "fp32", "bf16", "fp16"),
            "optimizer_impl": ("auto", "fused", "foreach", "for-loop"),
            "compile_mode": ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
            "ddp_grad_compression": ("none", "bf16"),
            "decode": ("cpu", "gpu"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise bad(key, f"must be one of {', '.join(allowed)}, not {getattr(self, key)!r}")
        for key in ("epochs", "batch_size", "eval_every", "step_size", "accumulate", "prefetch", "log_every"):
            if getattr(self, key) < 1:
                raise bad(key, f"must be at least 1, not {getattr(self, key)}")
        if self.schedule == "multistep" and not self.milestones:
            raise bad("milestones", "the multistep schedule needs at least one epoch, e.g. milestones = [120, 130]")
        if any(m < 1 for m in self.milestones) or list(self.milestones) != sorted(self.milestones):
            raise bad("milestones", f"must be increasing epochs of at least 1, not {self.milestones}")
        for layer, wd in self.weight_decay_layers.items():
            if isinstance(wd, bool) or not isinstance(wd, (int, float)) or wd < 0:
                raise bad("weight_decay_layers", f"{layer}: expected a non-negative number, got {wd!r}")
        if self.freeze and not self.init:
            raise bad("freeze", "needs --init (freezing randomly initialised layers would keep them random)")
        for f in dataclasses.fields(self):  # inf and nan are floats, and pass every comparison below
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise bad(f.name, f"must be a finite number, not {v}")
        for layer, wd in self.weight_decay_layers.items():
            if isinstance(wd, float) and not math.isfinite(wd):
                raise bad("weight_decay_layers", f"{layer}: must be a finite number, not {wd}")
        if self.momentum >= 1 or self.label_smoothing >= 1 or self.gamma <= 0:
            which = "momentum" if self.momentum >= 1 else "label_smoothing" if self.label_smoothing >= 1 else "gamma"
            raise bad(which, f"must be below 1 (and gamma above 0), not {getattr(self, which)}")
        for key in ("lr", "cache_limit_gb", "bias_lr_factor", "lr_body"):
            if not getattr(self, key) > 0:
                raise bad(key, f"must be positive, not {getattr(self, key)}")
        for key in (
            "weight_decay",
            "momentum",
            "warmup_epochs",
            "pad",
            "translate",
            "workers",
            "label_smoothing",
            "clip_grad_norm",
            "mixup_alpha",
            "cutmix_alpha",
            "pca_lighting",
            "checkpoint_every",
            "target_train_error",
        ):
            if getattr(self, key) < 0:
                raise bad(key, f"must not be negative, not {getattr(self, key)}")
        for key in ("affine_scale", "affine_squeeze", "affine_shear"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise bad(key, f"must be a fraction in [0, 1), not {getattr(self, key)}")
        if not 0.0 <= self.val_split < 1.0:
            raise bad("val_split", f"must be a fraction in [0, 1), not {self.val_split}")
        for key in ("image_size", "crop_size", "max_train_images", "max_val_images"):
            v = getattr(self, key)
            if v is not None and v < 1:
                raise bad(key, f"must be at least 1, not {v}")
        for key, (lo, hi) in BOUNDS.items():  # sizes, counts and depths bounded before any allocation
            v = getattr(self, key)
            if v is not None and not lo <= v <= hi:
                raise bad(key, f"must be in {lo:g}..{hi:g}, not {_shown(v)}")
        chans = self.model_options.get("in_chans")
        if chans is not None and (isinstance(chans, bool) or chans not in (1, 3)):  # images are read grey or RGB
            raise UserError(f"model_options.in_chans: must be 1 (grey) or 3 (RGB), not {_shown(chans)}")
        if any(m > BOUNDS["epochs"][1] for m in self.milestones):
            raise bad("milestones", f"epochs of at most {BOUNDS['epochs'][1]:g}")
        if self.auto_augment and self.auto_augment not in AUTO_AUGMENT:
            raise bad(
                "auto_augment",
                f"must be one of {', '.join(AUTO_AUGMENT)} (or empty: off), not {_shown(self.auto_augment)}",
            )
        if not 0 <= self.ra_magnitude <= 30:
            raise bad("ra_magnitude", f"must be in 0..30, not {self.ra_magnitude}")
        if not 0.0 <= self.random_erase <= 1.0:
            raise bad("random_erase", f"must be a probability in [0, 1], not {self.random_erase}")
        if self.auto_augment and self.normalize == "mean_image":
            raise bad(
                "auto_augment",
                'works on uint8 crops; the per-pixel mean image is subtracted first: use normalize = "meanstd"',
            )
        if not 0.0 < self.model_ema_decay < 1.0:
            raise bad("model_ema_decay", f"must be in (0, 1), not {self.model_ema_decay}")
        if not 0.0 < self.lr_warmup_decay <= 1.0:
            raise bad("lr_warmup_decay", f"must be a fraction in (0, 1], not {self.lr_warmup_decay}")
        if not 0.0 <= self.lr_min <= self.lr:
            raise bad("lr_min", f"must be in [0, lr = {self.lr:g}], not {self.lr_min}")
        for key, (lo, hi) in (("rrc_scale", (0.0, 1.0)), ("rrc_ratio", (1e-3, 1e3))):
            v = getattr(self, key)
            if len(v) != 2 or not all(math.isfinite(x) and lo < x <= hi for x in v) or v[0] > v[1]:
                raise bad(key, f"must be two increasing numbers in ({lo:g}, {hi:g}], e.g. [0.08, 1.0], not {_shown(v)}")
        if self.random_resized_crop:
            if self.normalize == "mean_image":
                raise bad(
                    "random_resized_crop",
                    'boxes of every size cannot subtract the per-pixel mean image; use normalize = "meanstd"',
                )
            if self.translate:
                raise bad("random_resized_crop", "replaces the random crop; translate must be 0")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> TrainConfig:
        return cls().update(values, source=source)

    def update(self, values: dict[str, Any], *, source: str = "config") -> TrainConfig:
        """A copy with ``values`` applied; keys and types are checked against the fields."""
        hints = typing.get_type_hints(TrainConfig)
        names = {f.name for f in dataclasses.fields(self)}
        new = dataclasses.replace(self, model_options=dict(self.model_options))
        unknown = [key for key in values if key.replace("-", "_") not in names]
        if unknown:
            shown = ", ".join(_shown(k) for k in unknown[:5]) + (
                f" and {len(unknown) - 5:,} more" if len(unknown) > 5 else ""
            )
            raise UserError(f"{source}: unknown key{'s' * (len(unknown) > 1)} {shown} (see `alexnet train --help`)")
        for key, value in values.items():
            setattr(new, key.replace("-", "_"), _coerce(value, hints[key.replace("-", "_")], f"{source}: {key}"))
        return new

    @classmethod
    def from_recipe(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Defaults, then the TOML recipe at ``path``, then ``overrides``."""
        return cls().update(load_recipe(path), source=str(path)).update(overrides, source="overrides")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check (and, for ints given where floats are expected, convert) a value against a type hint."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        origin = typing.get_origin(hint)
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a table of options, got {_shown(value)}")
        return dict(value)
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: expected a list, e.g. [120, 130], got {_shown(value)}")
        return [_coerce(v, item, where) for v in value]
    if hint is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where}: expected true or false, got {_shown(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where}: expected a number, got {_shown(value)}")
        try:
            return float(value)
        except OverflowError:  # an integer past float's range
            raise UserError(f"{where}: {_shown(value)} is out of range") from None
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where}: expected an integer, got {_shown(value)}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise UserError(f"{where}: expected a string, got {_shown(value)}")
        return value
    return value


def recipes_dir() -> Path:
    """The shipped recipes (package data: ``alexnet/recipes/*.toml``, installed with the wheel)."""
    return Path(str(resources.files(__package__).joinpath("recipes")))


def shipped_recipes() -> list[str]:
    return sorted(p.stem for p in recipes_dir().glob("*.toml"))


def load_recipe(path: str | Path) -> dict[str, Any]:
    """A recipe file, or a shipped recipe by name (``lenet5_mnist``) or file name."""
    p = Path(path)
    if not p.is_file():
        shipped = recipes_dir() / p.name
        if not p.suffix and shipped.with_suffix(".toml").is_file():
            p = shipped.with_suffix(".toml")
        elif shipped.is_file():
            p = shipped
        else:
            raise UserError(f"--recipe {path}: no such file")
    try:
        if not p.is_file():
            raise IsADirectoryError(21, "not a regular file")
        size = p.stat().st_size
        if size > MAX_RECIPE_BYTES:
            raise UserError(f"--recipe {p}: {size:,} bytes; a recipe is at most {MAX_RECIPE_BYTES:,}")
        text = p.read_text()
    except OSError as e:
        raise UserError(f"--recipe {p}: cannot be read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise UserError(f"--recipe {p}: not text (UTF-8)") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"--recipe {p}: not valid TOML ({str(e)[:200]})") from None
    except RecursionError:
        raise UserError(f"--recipe {p}: tables or arrays nested too deeply") from None


# Keys whose default changed after runs were written with them absent: what those runs did.
# (pca_lighting_form: before it existed, the colour noise had fb.resnet.torch's scale.)
FORMER_DEFAULTS = {"pca_lighting_form": "fb.resnet", "plateau_warmup": False}


def load_run_config(path: str | Path) -> dict[str, Any]:
    """A run folder's config.toml as that run used it: keys it was written without take the value
    the run had (``FORMER_DEFAULTS``), not today's default."""
    values = load_recipe(path)
    return {**FORMER_DEFAULTS, **values}


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def dump_toml(values: dict[str, Any]) -> str:
    """Write a flat dict (plus tables of scalars) as TOML; None values are written as comments."""
    lines, tables = [], []
    for k, v in values.items():
        if isinstance(v, dict):
            tables.append((k, v))
        elif v is None:
            lines.append(f"# {k} = (unset)")
        else:
            lines.append(f"{k} = {_toml_value(v)}")
    for name, table in tables:
        lines += ["", f"[{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"
