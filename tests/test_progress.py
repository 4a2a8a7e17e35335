"""Progress bars on long commands (shown on a terminal only, as convert's; FORCE_COLOR=1 makes rich
treat the captured stderr as one): synth camus and export nnunet here; train eval and predict in
tests/test_train_run.py."""

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
