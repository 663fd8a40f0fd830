"""Ten-patch testing (§4.1, Table 1): averaging the softmax over ten patches (four corners, the
centre and their reflections) gives 37.5% top-1 error where the centre patch gives 39.0%.

Setting (protocol v2, "ten-crop"): cifar_18pct trained on random 24x24 patches of the 32x32 images
and their reflections with the fast recipe's settings (20 epochs, 45,000 images); its final weights
evaluated on the test split by the centre patch and by the ten patches.
Evidence: ``docs/paper/ten-crop`` (2-core CPU); superseded: ``docs/paper/v1/ten-crop``.
"""

from __future__ import annotations

from ..context import Context
from ..library import Outcome, Row, diff, experiment, merge_configs, pct, points, stats
from ..plots import plot_arms
from ..verdicts import judge
from ._common import CROPS, FAST, RATES, fits


@experiment(
    "ten-crop",
    title="Ten-patch testing (§4.1, §6)",
    section="§4.1, Table 1",
    claim="averaging the softmax over ten patches (four corners, centre and their reflections) gives 37.5% "
    "top-1 error where one centre patch gives 39.0%",
    data="cifar10",
    seeds=3,
    epochs=20,
    train_images=None,
    minutes=15.0,
    pilot=(0.015, 0.0023, "the first version's 3 seeds"),
)
def ten_crop(ctx: Context) -> Outcome:
    base = merge_configs(FAST, CROPS, {"random_crop": True, "flip": True})
    lr = ctx.choose_rate(base, {"crops+flips": {}}, RATES, fits(0.45))
    runs = ctx.paired(merge_configs(base, {"lr": lr}), {"crops+flips": {}})["crops+flips"]
    centre = [ctx.measure(r, "centre_top1_error", ctx.evaluate) for r in runs]
    ten = [ctx.measure(r, "ten_crop_top1_error", lambda run: ctx.evaluate(run, ten_crop=True)) for r in runs]
    gain = diff(centre, ten)
    v = judge(gain, 0.015, "the top-1 error drop from ten-patch testing", figure=points(gain), claimed="1.5 pts")
    rows = [
        Row("top-1 error, centre patch", "39.0%", pct(centre, 2), centre),
        Row("top-1 error, ten patches averaged", "37.5%", pct(ten, 2), ten),
        Row("drop", "1.5 pts", points(gain), gain),
    ]
    plots = [
        plot_arms(
            ctx.out / "ten_crop.png",
            {"training": runs},
            "cifar_18pct on 24x24 patches",
            final={"centre": centre, "ten patches": ten},
        )
    ]
    notes = [
        f"The same checkpoint (the last epoch) evaluated both ways on the test split; {ctx.epochs} epochs on "
        f"{ctx.train_images or 'all 45,000'} training images, random 24x24 patches of the 32x32 images and "
        f"flips, lr {lr:g} (the pilot's), the fast recipe's settings otherwise."
    ]
    return Outcome(
        rows, [v], plots, {"centre": stats(centre), "ten_crop": stats(ten), "gain": stats(gain), "lr": lr}, notes
    )
