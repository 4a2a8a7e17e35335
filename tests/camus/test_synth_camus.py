"""`datakit synth camus`: both release layouts, exactly as the converters expect them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from datakit.cli import app
from datakit.errors import DatakitError
from datakit.synth.camus import write_camus_phantoms
from tests.cli_help import unboxed

VIEWS = ("2CH", "4CH")


def test_nifti_release_layout(camus_nifti: Path) -> None:
    patients = sorted(p.name for p in (camus_nifti / "database_nifti").iterdir())
    assert patients == [f"patient{n:04d}" for n in range(1, 6)]
    d = camus_nifti / "database_nifti" / "patient0002"
    expected = {f"Info_{v}.cfg" for v in VIEWS}
    for v in VIEWS:
        stem = f"patient0002_{v}"
        expected |= {f"{stem}_{x}.nii.gz" for x in ("ED", "ES", "ED_gt", "ES_gt", "half_sequence",
                                                      "half_sequence_gt")}
    assert {p.name for p in d.iterdir()} == expected
    cfg = dict(line.split(": ") for line in (d / "Info_2CH.cfg").read_text().splitlines())
    assert set(cfg) == {"ED", "ES", "NbFrame", "Sex", "Age", "ImageQuality", "EF", "FrameRate"}
    assert cfg["ImageQuality"] in ("Good", "Medium", "Poor")
    lists = {s: (camus_nifti / "database_split" / f"subgroup_{s}.txt").read_text().split()
             for s in ("training", "validation", "testing")}
    assert sorted(sum(lists.values(), [])) == patients and all(lists.values())


def test_nifti_headers_anisotropic_and_sequences(camus_nifti: Path) -> None:
    d = camus_nifti / "database_nifti" / "patient0001"
    ed = sitk.ReadImage(str(d / "patient0001_4CH_ED.nii.gz"))
    seq = sitk.ReadImage(str(d / "patient0001_4CH_half_sequence.nii.gz"))
    gt = sitk.ReadImage(str(d / "patient0001_4CH_half_sequence_gt.nii.gz"))
    sx, sy = ed.GetSpacing()
    assert 1.7 < sx / sy < 2.3  # columns about twice as wide as rows
    assert ed.GetPixelID() == sitk.sitkUInt8 and gt.GetPixelID() == sitk.sitkUInt8
    cfg = dict(line.split(": ") for line in (d / "Info_4CH.cfg").read_text().splitlines())
    assert seq.GetSize()[2] == int(cfg["NbFrame"]) == int(cfg["ES"]) and int(cfg["ED"]) == 1
    frames = sitk.GetArrayFromImage(seq)
    # the ED and ES files are the first and last frames of the half sequence
    assert np.array_equal(frames[0], sitk.GetArrayFromImage(ed))
    labels = sitk.GetArrayFromImage(gt)
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    lv = [(lab == 1).sum() for lab in labels]
    assert lv[-1] < 0.85 * lv[0]  # the LV contracts from ED to ES
    # echo-like: a dark fan outside, speckled tissue inside
    img = frames[0].astype(float)
    assert img[0, 0] == 0 and img[0, -1] == 0 and img[img.shape[0] // 2].std() > 10


def test_mhd_release_layout(camus_mhd: Path) -> None:
    train = camus_mhd / "training" / "patient0001"
    names = {p.name for p in train.iterdir()}
    assert {"patient0001_2CH_ED.mhd", "patient0001_2CH_ED.raw", "patient0001_2CH_ED_gt.mhd",
            "patient0001_4CH_sequence.mhd", "patient0001_4CH_sequence.raw", "Info_4CH.cfg"} <= names
    assert not any("half_sequence" in n for n in names)
    header = (train / "patient0001_2CH_ED.mhd").read_text()
    assert "ElementType = MET_UCHAR" in header and "ElementDataFile = patient0001_2CH_ED.raw" in header
    cfg = dict(line.split(": ") for line in (train / "Info_2CH.cfg").read_text().splitlines())
    assert "LVef" in cfg and "EF" not in cfg
    testing = camus_mhd / "testing" / "patient0006"
    assert testing.is_dir() and not any("_gt" in p.name for p in testing.iterdir())
    folds = camus_mhd / "listSubGroups"
    assert len(list(folds.glob("subGroup*_testing.txt"))) == 10
    listed = (folds / "subGroup1_training.txt").read_text().split()
    assert "patient0006" not in listed and "patient0003" in listed
    assert (folds / "subGroup1_testing.txt").read_text().split() == ["patient0001"]


def test_cli_synth_refuses_non_empty_folder(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "c"
    r = runner.invoke(app, ["synth", "camus", str(out), "--patients", "1", "--release", "mhd",
                            "--row-spacing", "1.2"])
    assert r.exit_code == 0, r.output
    assert "1 CAMUS phantom patients (mhd release)" in r.output
    again = runner.invoke(app, ["synth", "camus", str(out), "--patients", "1"])
    assert again.exit_code == 1 and "not empty" in again.output
    bad = runner.invoke(app, ["synth", "camus", str(tmp_path / "d"), "--release", "dicom"])
    assert bad.exit_code == 2 and "'dicom' is not one of 'nifti', 'mhd'" in unboxed(bad.output)
    with pytest.raises(DatakitError, match="--release must be nifti or mhd, not 'dicom'"):
        write_camus_phantoms(tmp_path / "e", patients=1, release="dicom")
