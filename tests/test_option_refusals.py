"""Mistaken options are refused with the reason, exit 1, no traceback, before any store is written:
--ratios that do not sum to 1 (they were silently rescaled) and a --binarize threshold no pixel of
the masks' dtype can pass (all-background masks that validate passed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from datakit.cli import app
from tests.folder_data import write_pairs

runner = CliRunner()


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("ratios, total", [("0.8,0.3,0.1", "1.2"), ("0.5,0.2,0.1", "0.8"), ("7,1.5,1.5", "10")])
def test_ratios_not_summing_to_one_are_refused(acdc_phantoms: Path, tmp_path: Path, ratios: str, total: str):
    r = run("convert", "acdc", acdc_phantoms, "--out", tmp_path / "s.h5", "--ratios", ratios, "-j", "1")
    assert r.exit_code == 1, r.output
    assert f"error: --ratios {ratios} sums to {total}, not 1" in r.output and "Traceback" not in r.output
    assert not list(tmp_path.iterdir())


def test_binarize_impossible_for_8_bit_masks_is_refused(tmp_path: Path):
    src = tmp_path / "src"
    write_pairs(src, ["a", "b", "c"])  # 8-bit PNG masks 0/255
    for on_error in ("stop", "skip"):  # an option error, not one bad patient: fatal either way
        r = run("convert", "folder", src, "--out", tmp_path / "s.h5", "--binarize", "300", "--on-error", on_error)
        assert r.exit_code == 1, r.output
        assert "--binarize 300 is impossible for uint8 masks (grey levels 0-255): every pixel would be background" \
            in r.output and "masks/a.png" in r.output and "Traceback" not in r.output
    r = run("convert", "folder", src, "--out", tmp_path / "s.h5", "--binarize", "255")
    assert r.exit_code == 1 and "impossible" in r.output
    r = run("convert", "folder", src, "--out", tmp_path / "s.h5", "--binarize", "-1")
    assert r.exit_code == 1 and "every pixel would be foreground" in r.output
    r = run("convert", "folder", src, "--out", tmp_path / "s.h5", "--binarize", "254")
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "s.h5.tmp").exists()


def test_binarize_300_is_fine_for_16_bit_masks(tmp_path: Path):
    src = tmp_path / "src"
    write_pairs(src, ["a", "b"], ext=".tif")
    for p in (src / "masks").glob("*.tif"):  # 16-bit masks 0 / 1000
        tifffile.imwrite(p, (tifffile.imread(p) > 0).astype(np.uint16) * 1000)
    r = run("convert", "folder", src, "--out", tmp_path / "s.h5", "--binarize", "300")
    assert r.exit_code == 0, r.output
    r = run("convert", "folder", src, "--out", tmp_path / "t.h5", "--binarize", "70000")
    assert r.exit_code == 1 and "impossible for uint16 masks (grey levels 0-65535)" in r.output
