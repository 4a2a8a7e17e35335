"""``datakit preview``: a PNG montage of samples (image, mask overlay, scribble overlay) with
patient / frame / slice captions and a class colour legend."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from datakit.constants import IGNORE
from datakit.errors import DatakitError
from datakit.safe_io import replace_file
from datakit.store import Store
from datakit.store.writer import check_writable

# class colours by label value (tab10 order; background yellow: it stands out on grey images)
PALETTE = np.array([(1.0, 0.85, 0.2), (0.12, 0.47, 0.71), (1.0, 0.5, 0.05), (0.17, 0.63, 0.17),
                    (0.84, 0.15, 0.16), (0.58, 0.4, 0.74), (0.55, 0.34, 0.29), (0.89, 0.47, 0.76),
                    (0.74, 0.74, 0.13), (0.09, 0.75, 0.81)])


def colour(k: int) -> np.ndarray:
    return PALETTE[k % len(PALETTE)]


def to_rgb(image: np.ndarray) -> np.ndarray:
    """(C, H, W) normalised image -> (H, W, 3) in [0, 1], stretched between its 1st/99th percentiles."""
    x = image[0] if image.shape[0] == 1 else np.moveaxis(image[:3], 0, -1)
    lo, hi = np.percentile(x, [1, 99])
    x = np.clip((x - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(x)
    return np.repeat(x[..., None], 3, axis=-1) if x.ndim == 2 else x


def drawn_classes(labels: np.ndarray, background: bool) -> list[int]:
    """The classes :func:`overlay` colours in ``labels``: not 255, and background only if asked."""
    return [int(k) for k in np.unique(labels) if k != IGNORE and (k != 0 or background)]


def overlay(rgb: np.ndarray, labels: np.ndarray, alpha: float, background: bool) -> np.ndarray:
    """Blend class colours over ``rgb``; 255 stays the image; background only if asked."""
    out = rgb.copy()
    for k in drawn_classes(labels, background):
        sel = labels == k
        out[sel] = (1 - alpha) * out[sel] + alpha * colour(k)
    return out


PANEL_W, PANEL_H = 2.3, 2.6  # inches per panel (image + its two-line caption)
TITLE_H, LEGEND_H = 0.45, 0.45  # inches of figure height for a one-line title and the class legend
TITLE_LINE_H, TITLE_CHARS_PER_INCH = 0.2, 11  # the title wraps to the figure's width at 10 pt


def short_id(text: str, limit: int) -> str:
    """``text`` cut in the middle to ``limit`` characters (Unity's 64-hex ids would cross into the next
    panel's caption): the start and end stay readable."""
    if len(text) <= limit:
        return text
    tail = max(4, limit // 3)
    return f"{text[:limit - tail - 1]}\u2026{text[-tail:]}"


def caption(smp: dict) -> str:
    """Two short lines over the image panel: ``#index patient`` and ``view frame slice N``."""
    where = [str(x) for x in (smp["view"], smp["frame"]) if str(x)]
    if int(smp["slice"]) >= 0:
        where.append(f"slice {int(smp['slice'])}")
    first = f"#{int(smp['index'])} {short_id(str(smp['patient']), 22)}"
    return first + ("\n" + short_id(" ".join(where), 30) if where else "")


def pick(store: Store, split: str | None, n: int, seed: int) -> np.ndarray:
    idx = store.indices(split)
    if not len(idx):
        raise DatakitError(f"split {split!r} has no samples", store.path)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(idx, size=min(n, len(idx)), replace=False))


def write_preview(path: str | Path, out: str | Path, split: str | None = None, n: int = 16,
                  seed: int = 0, predictions: dict[int, np.ndarray] | None = None, *,
                  overwrite: bool = True) -> Path:
    """Montage of ``n`` random samples of ``split``: 2 samples per row, 3 panels each (image, mask,
    scribble; 2 for a store without scribbles).

    With ``predictions`` (sample index -> predicted labels, e.g. from ``train predict --preview``) the
    montage shows those samples, and the third panel is the prediction instead of the scribble.
    An existing ``out`` is replaced unless ``overwrite`` is false (``datakit preview`` without
    ``--overwrite``).
    """
    out = Path(out)
    check_writable(out, overwrite)
    if n < 1:  # the CLI's --n has min=1; Python callers may pass anything
        raise DatakitError(f"--n must be at least 1, not {n}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    with Store(path) as s:
        chosen = np.array(sorted(predictions)) if predictions else pick(s, split, n, seed)
        scribbled = bool((s.meta["scribble_source"] != "none").any())
        third = "prediction" if predictions else ("scribble" if scribbled else None)  # no empty column
        panels = 3 if third else 2
        per_row = 2 if len(chosen) > 1 else 1
        rows = int(np.ceil(len(chosen) / per_row))
        width = PANEL_W * panels * per_row
        what = ("mask vs prediction" if predictions else "background shown in scribbles only" if scribbled
                else "no scribbles in this store")
        title = textwrap.fill(f"{s.path.name}: {len(chosen)} of {len(s.indices(split))} samples "
                              f"({split or 'all'}, seed {seed}); {what}", int(width * TITLE_CHARS_PER_INCH))
        title_h = TITLE_H + TITLE_LINE_H * title.count("\n")
        height = PANEL_H * rows + title_h + LEGEND_H
        # "compressed": constrained layout for grids of fixed-aspect images; it keeps every caption, the
        # title and the legend clear of the panels (tight_layout let captions slide under the row above)
        fig, axes = plt.subplots(rows, panels * per_row, figsize=(width, height), squeeze=False, layout="compressed")
        for ax in axes.ravel():
            ax.axis("off")
        drawn: set[int] = set()  # the legend names only the colours the panels show
        for j, i in enumerate(chosen):
            smp = s.sample(int(i))
            rgb = to_rgb(smp["image"])
            r, c0 = divmod(j, per_row)
            shown = [(rgb, caption(smp)),
                     (overlay(rgb, smp["mask"], 0.45, background=False),
                      "mask" + ("" if (smp["mask"] != IGNORE).any() else ": none"))]
            drawn.update(drawn_classes(smp["mask"], background=False))
            if third == "prediction":
                shown.append((overlay(rgb, predictions[int(i)], 0.45, background=False), "prediction"))
                drawn.update(drawn_classes(predictions[int(i)], background=False))
            elif third == "scribble":
                shown.append((overlay(rgb, smp["scribble"], 1.0, background=True),
                              f"scribble ({short_id(str(smp['scribble_source']), 24)})"))
                drawn.update(drawn_classes(smp["scribble"], background=True))
            for k, (img, panel_title) in enumerate(shown):
                ax = axes[r, panels * c0 + k]
                ax.imshow(img, interpolation="nearest")
                ax.set_title(panel_title, fontsize=8)
        legend = [Patch(color=colour(k), label=f"{k} {s.classes[k]}") for k in sorted(drawn)]
        if legend:
            fig.legend(handles=legend, loc="outside lower center", ncol=min(len(legend), 8), frameon=False,
                       fontsize=9)
        fig.suptitle(title, fontsize=10)
        try:  # a unique temporary, renamed when complete: a failure or a concurrent run never leaves half a PNG
            with replace_file(out, overwrite) as f:
                fig.savefig(f, dpi=100, format="png")
        finally:
            plt.close(fig)
    return out
