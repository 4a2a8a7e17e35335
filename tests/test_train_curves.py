"""`train plot` of several runs: each run's best is marked and said, none drawn over another's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from tests.plot_checks import overlapping  # noqa: E402
from train.curves import curves_figure, read_run  # noqa: E402


def _run(folder: Path, method: str, dice: list[float]) -> Path:
    folder.mkdir()
    (folder / "config.toml").write_text(f'method = "{method}"\n')
    rows = [{"step": 50 * (k + 1), "valid/dice_mean": d, "valid/dice/LV": d} for k, d in enumerate(dice)]
    rows += [{"step": 50 * (k + 1), "loss/ce": 1.0 / (k + 1), "lr": 1e-4} for k in range(len(dice))]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_two_runs_with_the_same_best_keep_both_markers_and_values_readable(tmp_path: Path) -> None:
    a = read_run(_run(tmp_path / "a", "maag", [0.5, 0.802, 0.7]))
    b = read_run(_run(tmp_path / "b", "pce", [0.4, 0.806, 0.6]))  # the best at the same step, 0.004 apart
    fig = curves_figure([a, b])
    dice = fig.axes[0]
    assert not overlapping([*dice.texts, *dice.get_legend().get_texts()], fig)
    legend = [t.get_text() for t in dice.get_legend().get_texts()]
    assert legend == ["a (maag): best 0.802 at 100", "b (pce): best 0.806 at 100"]
    first, second = (line for line in dice.lines if len(line.get_xdata()) == 1)  # the best markers
    assert first.get_marker() != second.get_marker()  # coinciding bests stay two visible markers:
    assert first.get_zorder() > second.get_zorder() and first.get_markersize() < second.get_markersize()
