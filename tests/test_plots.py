"""The experiments' figures keep their titles inside the figure."""

from __future__ import annotations

import pytest

from alexnet.experiments.plots import fit_title

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
plt = pytest.importorskip("matplotlib.pyplot")


@pytest.mark.parametrize(
    ("title", "wrapped"),
    [
        ("short", False),
        ("Figure 1 (standardised inputs): four-layer CNN on CIFAR-10, ReLU (solid) vs tanh (dashed)", True),
        ("learning-rate search (standardised inputs): training error after 3 epochs, " * 3, True),
    ],
)
def test_a_title_is_wrapped_to_its_axes_and_stays_inside_the_figure(title: str, wrapped: bool) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.set_ylabel("training error after the search (%)")
    fit_title(fig, ax, title)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box, page = ax.title.get_window_extent(renderer), fig.bbox
    plt.close(fig)
    assert page.x0 <= box.x0 and box.x1 <= page.x1 and box.y1 <= page.y1
    assert ax.title.get_text().replace("\n", " ") == title.strip()  # nothing lost
    assert ("\n" in ax.title.get_text()) == wrapped
