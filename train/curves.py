"""``train plot``: training curves of one or more runs in one PNG, read from each ``metrics.jsonl``.

Four panels, one colour per run: validation mean Dice (best marked, its value in the legend),
validation Dice per class (one line style per class), the supervised loss (``loss/ce``: the scribble
CE for maag and pce, the mask CE for full), and maag's adversarial losses (generator and
discriminator; the learning rate when no run has them). A run is labelled by its folder name and
method (``config.toml``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from datakit.errors import DatakitError

LINESTYLES = ("-", "--", ":", "-.")
BEST_MARKERS = ("*", "D", "P", "X", "s", "^")  # one shape per run


@dataclass
class RunCurves:
    label: str
    rows: list[dict[str, Any]]

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """(steps, values) of the rows that log ``key`` with a finite value."""
        pts = [(int(r["step"]), float(r[key])) for r in self.rows
               if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        return [s for s, _ in pts], [v for _, v in pts]

    def classes(self) -> list[str]:
        seen: list[str] = []
        for r in self.rows:
            seen += [k.removeprefix("valid/dice/") for k in r if k.startswith("valid/dice/")
                     and k.removeprefix("valid/dice/") not in seen]
        return seen


def read_run(run: Path) -> RunCurves:
    """A run folder's logged rows; clear errors for a folder that is not a run or a damaged log."""
    path = run / "metrics.jsonl"
    if not run.is_dir():
        raise DatakitError("not a run folder", run)
    if not path.is_file():
        raise DatakitError("no metrics.jsonl: not a train run folder, or it logged nothing yet", run)
    rows = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatakitError(f"line {n} is not JSON ({e.msg})", path) from None
            if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                raise DatakitError(f"line {n} has no integer 'step'", path)
            rows.append(row)
    if not rows:
        raise DatakitError("is empty: the run logged nothing yet", path)
    from train.config import load_toml

    method = ""
    try:
        method = str(load_toml(run / "config.toml").get("method", ""))
    except (DatakitError, OSError):
        pass  # no readable config: the label is the folder name alone
    name = run.resolve().name
    return RunCurves(f"{name} ({method})" if method and method != name else name, rows)


def plot_runs(runs: list[RunCurves], out: Path | BinaryIO, title: str = "") -> None:
    """Write the four-panel PNG to ``out``, a path or an open binary file (the caller chooses temporary and
    rename: ``datakit.safe_io.replace_file``)."""
    import matplotlib.pyplot as plt

    fig = curves_figure(runs, title)
    try:
        fig.savefig(out, dpi=100, format="png")
    finally:
        plt.close(fig)


def curves_figure(runs: list[RunCurves], title: str = "") -> Any:
    """The matplotlib figure of :func:`plot_runs` (panels in reading order: ``fig.axes``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    (dice_ax, cls_ax), (ce_ax, adv_ax) = axes
    for i, run in enumerate(runs):
        c = f"C{i}"
        steps, dice = run.series("valid/dice_mean")
        if steps:
            best = max(range(len(dice)), key=dice.__getitem__)
            dice_ax.plot(steps, dice, color=c, marker="." if len(steps) < 60 else None,
                         label=f"{run.label}: best {dice[best]:.3f} at {steps[best]}")
            # the best value is said in the legend, not next to the marker (runs' bests often coincide); each
            # run's marker has its own shape and lies on top of the later, larger ones: all stay visible
            dice_ax.plot(steps[best], dice[best], BEST_MARKERS[i % len(BEST_MARKERS)], color=c,
                         markeredgecolor="white", markersize=min(12 + 4 * i, 28), zorder=20 - i)
        for j, name in enumerate(run.classes()):
            s, v = run.series(f"valid/dice/{name}")
            cls_ax.plot(s, v, color=c, linestyle=LINESTYLES[j % len(LINESTYLES)],
                        label=f"{run.label}: {name}")
        s, v = run.series("loss/ce")
        ce_ax.plot(s, v, color=c, label=run.label)
    adversarial = [run for run in runs if run.series("loss/adv")[0]]
    for i, run in enumerate(runs):
        if run in adversarial:
            adv_ax.plot(*run.series("loss/adv"), color=f"C{i}", label=f"{run.label}: generator")
            adv_ax.plot(*run.series("loss/disc"), color=f"C{i}", linestyle="--", label=f"{run.label}: discriminator")
        elif not adversarial:
            adv_ax.plot(*run.series("lr"), color=f"C{i}", label=run.label)
    dice_ax.set(title="validation mean Dice (marker: best)", xlabel="iteration", ylabel="Dice", ylim=(0, 1))
    cls_ax.set(title="validation Dice per class", xlabel="iteration", ylabel="Dice", ylim=(0, 1))
    ce_ax.set(title="supervised loss (scribble or mask CE)", xlabel="iteration", ylabel="loss")
    adv_ax.set(title="adversarial losses (LSGAN)" if adversarial else "learning rate", xlabel="iteration",
               ylabel="loss" if adversarial else "lr")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "nothing logged", transform=ax.transAxes, ha="center", va="center")
    fig.suptitle(title or "training curves: " + ", ".join(r.label for r in runs))
    fig.tight_layout()
    return fig
