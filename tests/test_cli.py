"""`datakit info`, `validate`, `synth acdc`, `--version` through the CLI, exit codes asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
from typer.testing import CliRunner

from datakit import __version__
from datakit.cli import app

runner = CliRunner()


def test_info_summarises_the_store(acdc_store: Path) -> None:
    r = runner.invoke(app, ["info", str(acdc_store)])
    assert r.exit_code == 0, r.output
    assert "from 4 patients (acdc)" in r.output
    assert "0 background, 1 RV, 2 MYO, 3 LV" in r.output
    assert "spacing 1.51 x 1.51 mm" in r.output and "stratified:group" in r.output
    d = json.loads(runner.invoke(app, ["info", str(acdc_store), "--json"]).output)
    assert d["patients"] == 4 and sum(v["patients"] for v in d["splits"].values()) == 4
    assert d["size_bytes"] == acdc_store.stat().st_size


def test_validate_ok_and_broken(acdc_store: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["validate", str(acdc_store)])
    assert r.exit_code == 0 and "valid" in r.output
    broken = tmp_path / "broken.h5"
    broken.write_bytes(acdc_store.read_bytes())
    with h5py.File(broken, "r+") as f:
        m = f["masks"][5]
        m[0, 0] = 42
        f["masks"][5] = m
        del f.attrs["command"]
    r = runner.invoke(app, ["validate", str(broken)])
    assert r.exit_code == 1
    assert "attrs/command: missing" in r.output
    assert "masks[5]: masks: values [42] outside classes 0-3 and 255" in r.output
    assert "2 violation(s)" in r.output


def test_info_on_missing_or_foreign_file(tmp_path: Path) -> None:
    r = runner.invoke(app, ["info", str(tmp_path / "none.h5")])
    assert r.exit_code == 1 and "no such store file" in r.output
    p = tmp_path / "x.txt"
    p.write_text("hello")
    r = runner.invoke(app, ["validate", str(p)])
    assert r.exit_code == 1 and "cannot be opened as HDF5" in r.output


def test_synth_acdc_writes_the_exact_layout(tmp_path: Path) -> None:
    out = tmp_path / "acdc"
    r = runner.invoke(app, ["synth", "acdc", str(out), "--patients", "2", "--seed", "3"])
    assert r.exit_code == 0, r.output
    d = out / "training" / "patient002"
    info = dict(line.split(": ") for line in (d / "Info.cfg").read_text().splitlines())
    assert set(info) == {"ED", "ES", "Group", "Height", "NbFrame", "Weight"}
    ed, es = int(info["ED"]), int(info["ES"])
    names = sorted(p.name for p in d.iterdir())
    assert names == sorted(["Info.cfg", "patient002_4d.nii.gz"] + [
        f"patient002_frame{f:02d}{k}.nii.gz" for f in (ed, es) for k in ("", "_gt", "_scribble")])
    img, gt = nib.load(d / f"patient002_frame{ed:02d}.nii.gz"), nib.load(d / f"patient002_frame{ed:02d}_gt.nii.gz")
    sc = nib.load(d / f"patient002_frame{ed:02d}_scribble.nii.gz")
    cine = nib.load(d / "patient002_4d.nii.gz")
    assert img.ndim == 3 and cine.shape == (*img.shape, int(info["NbFrame"]))
    assert gt.get_data_dtype() == np.uint8 and sc.get_data_dtype() == np.uint16
    assert set(np.unique(np.asarray(gt.dataobj))) == {0, 1, 2, 3}
    assert set(np.unique(np.asarray(sc.dataobj))) == {0, 1, 2, 3, 4}
    zooms = img.header.get_zooms()
    assert 1.2 <= zooms[0] == zooms[1] <= 1.8 and zooms[2] in (5.0, 6.5, 10.0)
    np.testing.assert_array_equal(np.asarray(cine.dataobj)[..., ed - 1], np.asarray(img.dataobj))
    r = runner.invoke(app, ["synth", "acdc", str(out), "--patients", "1"])
    assert r.exit_code == 1 and "not empty" in r.output


def test_version_and_help_do_not_import_torch() -> None:
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"datakit {__version__}"
    code = "import sys; from datakit.cli import app; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_synth_refuses_a_file_where_its_folder_should_be(tmp_path: Path) -> None:
    target = tmp_path / "a_file"
    target.write_bytes(b"keep")
    for source in ("acdc", "camus", "unity"):
        r = runner.invoke(app, ["synth", source, str(target)])
        assert r.exit_code == 1 and f"error: {target}: is not a folder" in r.output, (source, r.output)
        assert isinstance(r.exception, SystemExit)
    assert target.read_bytes() == b"keep"
