"""Progress bars on long commands (shown on a terminal only, as convert's; FORCE_COLOR=1 makes rich
treat the captured stderr as one): synth camus and export nnunet here; train eval and predict in
tests/train/test_cli.py."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from datakit.cli import app

runner = CliRunner()
TERMINAL = {"FORCE_COLOR": "1", "COLUMNS": "120"}


def _final(output: str, what: str) -> str:
    """The bar's last drawn count, e.g. '3/3', of the task named ``what``."""
    counts = re.findall(re.escape(what) + r".*?(\d+/\d+)", output)
    assert counts, output
    return counts[-1]


def test_synth_camus_shows_progress(tmp_path: Path):
    r = runner.invoke(app, ["synth", "camus", str(tmp_path / "c"), "--patients", "3", "--row-spacing", "1.2"],
                      env=TERMINAL)
    assert r.exit_code == 0, r.output
    assert _final(r.output, "writing CAMUS phantoms") == "3/3"
    plain = runner.invoke(app, ["synth", "camus", str(tmp_path / "d"), "--patients", "1", "--row-spacing", "1.2"])
    assert "writing CAMUS" not in plain.output  # not a terminal: no bar


def test_export_nnunet_shows_progress(acdc_store: Path, tmp_path: Path):
    r = runner.invoke(app, ["export", "nnunet", str(acdc_store), str(tmp_path), "--dataset-id", "7", "--name", "P"],
                      env=TERMINAL)
    assert r.exit_code == 0, r.output
    cases = len(list((tmp_path / "Dataset007_P").glob("labels*/*.nii.gz")))
    assert cases and _final(r.output, "exporting cases") == f"{cases}/{cases}"


def test_one_public_helper_draws_every_bar(monkeypatch) -> None:
    """datakit.progress.progress_bar: on stderr, only on a terminal unless forced; no module reaches for a
    private helper (pipeline._progress) or keeps its own (train.loop's former _progress / _NoProgress)."""
    import train.loop
    from datakit.progress import progress_bar

    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    bar = progress_bar()
    assert bar.disable and bar.console.stderr  # pytest's captured stderr is no terminal
    assert not progress_bar(True).disable and progress_bar(False).disable
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert not progress_bar().disable
    assert train.loop.progress_bar is progress_bar and not hasattr(train.loop, "_NoProgress")
    import datakit.pipeline

    assert datakit.pipeline.progress_bar is progress_bar and not hasattr(datakit.pipeline, "_progress")
    root = Path(__file__).resolve().parents[1]
    private = [str(p.relative_to(root)) for folder in ("datakit", "train") for p in (root / folder).rglob("*.py")
               if "import _progress" in p.read_text()]
    assert private == []


def test_train_run_draws_its_bar_on_a_terminal(small_store: Path, tmp_path: Path, one_torch_thread) -> None:
    from train.cli import app as train_app

    r = runner.invoke(train_app, ["run", "--store", str(small_store), "--out", str(tmp_path / "run"), "--method",
                                  "pce", "--max-steps", "2", "--width", "4", "--batch-size", "2", "--workers", "0",
                                  "--eval-every", "2"], env=TERMINAL)
    assert r.exit_code == 0, r.output
    assert _final(r.output, "pce loss") == "2/2"
    quiet = runner.invoke(train_app, ["run", "--store", str(small_store), "--out", str(tmp_path / "quiet"),
                                      "--method", "pce", "--max-steps", "1", "--width", "4", "--batch-size", "2",
                                      "--workers", "0"])
    assert quiet.exit_code == 0, quiet.output
    assert "pce loss" not in quiet.output  # not a terminal: no bar
