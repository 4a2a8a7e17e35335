"""``datakit stats --plots DIR``: PNG figures of a store's statistics (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from datakit.preview import colour
from datakit.safe_io import replace_file
from datakit.stats import SampleFigures

PLOT_NAMES = ("coverage.png", "splits.png", "intensity.png")  # the files write_plots makes in its folder


def write_plots(stats: dict[str, Any], figs: SampleFigures, out: Path, overwrite: bool = True) -> list[Path]:
    """Coverage distributions per class, samples and patients per split, intensity histogram; each PNG
    written through a unique temporary and renamed (an existing one replaced only with ``overwrite``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    classes = stats["classes"]
    written = []

    # coverage distributions: one column per class, mask on top, scribble below
    fig, axes = plt.subplots(2, len(classes), figsize=(3.2 * len(classes), 5.5), squeeze=False)
    for j, name in enumerate(classes):
        for row, (px, known, what) in enumerate(((figs.mask_px, figs.mask_known, "mask"),
                                                 (figs.scribble_px, figs.scribble_known, "scribble"))):
            ax = axes[row, j]
            values = 100.0 * px[known, j] / figs.pixels
            ax.hist(values, bins=40, color=colour(j), alpha=0.9)
            ax.set_title(f"{name}: {what}", fontsize=10)
            ax.set_xlabel("% of image pixels")
            if j == 0:
                ax.set_ylabel("samples")
            if not len(values):
                ax.text(0.5, 0.5, f"no {what}s", transform=ax.transAxes, ha="center", va="center")
    fig.suptitle("Coverage per class (samples that carry the array)")
    fig.tight_layout()
    written.append(_save(fig, out / "coverage.png", overwrite))

    written.append(_save(splits_figure(stats), out / "splits.png", overwrite))

    # intensity histogram (the subsample the percentiles come from)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    values = np.concatenate(figs.subsample) if figs.subsample else np.zeros(0)
    if len(values):
        lo, hi = np.percentile(values, [0.1, 99.9])
        ax.hist(values, bins=100, range=(lo, hi) if hi > lo else None, color="C0")
        for q, label in ((np.percentile(values, 1), "p1"), (np.percentile(values, 99), "p99")):
            ax.axvline(q, color="k", ls="--", lw=1)
            ax.text(q, ax.get_ylim()[1] * 0.95, f" {label}", va="top")
    ax.set_title("Stored intensities (all samples, normalised)")
    ax.set_xlabel("intensity")
    ax.set_ylabel("pixels (sampled)" if len(values) < figs.sum.size * figs.pixels else "pixels")
    fig.tight_layout()
    written.append(_save(fig, out / "intensity.png", overwrite))
    return written


def splits_figure(stats: dict[str, Any]) -> Any:
    """Samples and patients per split, as horizontal bars: a split's name is a row label, so names of any
    length (MAAG's ``train_scribble``, ``train_masks``) never run into each other."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in stats["splits"] if n != "all"] or list(stats["splits"])
    fig, axes = plt.subplots(1, 2, figsize=(9, max(2.5, 1.3 + 0.45 * len(names))), sharey=True)
    for ax, key in zip(axes, ("samples", "patients"), strict=True):
        values = [stats["splits"][n][key] for n in names]
        bars = ax.barh(names, values, color=[f"C{i}" for i in range(len(names))])
        ax.bar_label(bars, padding=3)
        ax.margins(x=0.15)  # room for the labels
        ax.set_title(f"{key} per split")
        ax.set_xlabel(key)
    axes[0].invert_yaxis()  # the splits top to bottom in the store's order (shared by both panels)
    fig.tight_layout()
    return fig


def _save(fig: Any, path: Path, overwrite: bool) -> Path:
    import matplotlib.pyplot as plt

    try:
        with replace_file(path, overwrite) as f:
            fig.savefig(f, dpi=100, format="png")
    finally:
        plt.close(fig)
    return path
