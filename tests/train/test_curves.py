"""train/curves.py: the curves of several runs from their metrics rows (each best marked and said, none
drawn over another's), through train plot, and what is not a run refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from tests.plot_checks import overlapping  # noqa: E402
from tests.train.helpers import invoke, rows  # noqa: E402
from train.curves import curves_figure, read_run  # noqa: E402


def test_plot_draws_the_runs_curves(tiny_run: Path, tmp_path: Path) -> None:
    """`train plot`: one PNG from several runs; curves are the logged rows; adversarial panel for maag."""
    from PIL import Image

    from train.curves import curves_figure, read_run

    maag = tmp_path / "m"  # a maag run's rows, in the loop's format (a real maag run is slower to make)
    maag.mkdir()
    (maag / "config.toml").write_text('method = "maag"\n')
    logged = [{"step": s, "loss/total": 1.0 / s, "loss/ce": 2.0 / s, "loss/adv": 0.3, "loss/disc": 0.6,
               "loss/ce_weight": 0.1, "lr": 1e-4, "samples_per_s": 5.0} for s in (1, 2, 3)]
    logged.insert(2, {"step": 2, "valid/dice_mean": 0.5, "valid/dice/LV": 0.5})
    (maag / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in logged))
    pce = read_run(tiny_run)
    assert pce.label == "run (pce)" and pce.series("valid/dice_mean")[0] == [1, 2]
    assert pce.series("valid/dice_mean")[1] == [r["valid/dice_mean"] for r in rows(tiny_run) if "valid/dice_mean" in r]
    assert pce.classes() == ["RV", "MYO", "LV"]
    m = read_run(maag)
    assert m.label == "m (maag)" and m.series("loss/ce") == ([1, 2, 3], [2.0, 1.0, 2.0 / 3])
    fig = curves_figure([pce, m])
    dice, per_class, ce, adv = fig.axes
    assert len(dice.lines) == 4  # a curve and a best marker per run
    assert len(per_class.lines) == 4 and len(ce.lines) == 2  # pce's three classes, maag's one
    assert adv.get_title() == "adversarial losses (LSGAN)" and len(adv.lines) == 2  # pce has none
    assert curves_figure([pce]).axes[3].get_title() == "learning rate"

    out = tmp_path / "curves.png"
    r = invoke("plot", tiny_run, maag, "--out", out)
    assert r.exit_code == 0 and "wrote" in r.output, r.output
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (1200, 800)
    r = invoke("plot", tiny_run, "--out", out)
    assert r.exit_code == 1 and "already exists" in r.output
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporaries left


def test_plot_refuses_what_is_not_a_run(tiny_run: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    out = tmp_path / "c.png"
    r = invoke("plot", tiny_run, bad, "--out", out)
    assert r.exit_code == 1 and "bad: no metrics.jsonl" in r.output and not out.exists()
    (bad / "metrics.jsonl").write_text('{"step": 1, "loss/ce": 1.0}\n{"step": 2, "loss/ce": \n')
    r = invoke("plot", bad, "--out", out)
    assert r.exit_code == 1 and "metrics.jsonl: line 2 is not JSON" in r.output and "Traceback" not in r.output
    (bad / "metrics.jsonl").write_text('{"loss/ce": 1.0}\n')
    r = invoke("plot", bad, "--out", out)
    assert r.exit_code == 1 and "line 1 has no integer 'step'" in r.output
    r = invoke("plot", tmp_path / "nowhere", "--out", out)
    assert r.exit_code == 1 and "nowhere: not a run folder" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]


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
