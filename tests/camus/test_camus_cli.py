"""`datakit convert camus` through the CLI: good runs, options, and bad input (file named, nothing left)."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import pytest
from typer.testing import CliRunner

from datakit.cli import app
from datakit.store import validate_store
from tests.cli_help import unboxed
from tests.helpers import tree_digest

runner = CliRunner()


def _convert(src: Path, out: Path, *args: str):
    return runner.invoke(app, ["convert", "camus", str(src), "--out", str(out), "--size", "48", "-j", "1",
                               *args])


def _nothing_left(folder: Path) -> None:
    assert [p.name for p in folder.iterdir()] == [], "a failed conversion must leave no store or temp file"


def test_cli_convert_nifti_4ch_and_refuse_existing(camus_nifti: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.h5"
    before = tree_digest(camus_nifti)
    r = _convert(camus_nifti, out, "--views", "4ch")
    assert r.exit_code == 0, r.output
    assert "10 samples, 5 patients" in r.output
    assert validate_store(out) == []
    with h5py.File(out) as f:
        assert set(f["meta/view"].asstr()[:]) == {"4CH"}
        assert f.attrs["command"].startswith("datakit convert camus ") and "--views 4ch" in f.attrs["command"]
    again = _convert(camus_nifti, out)
    assert again.exit_code == 1 and "already exists" in again.output
    assert _convert(camus_nifti, out, "--overwrite", "--views", "2CH").exit_code == 0
    assert tree_digest(camus_nifti) == before  # sources are only read


def test_cli_src_forms_and_format(camus_nifti: Path, tmp_path: Path) -> None:
    # database_nifti/ finds database_split/ beside it; one patient folder converts alone
    r = _convert(camus_nifti / "database_nifti", tmp_path / "a.h5", "--format", "nifti")
    assert r.exit_code == 0, r.output
    with h5py.File(tmp_path / "a.h5") as f:
        assert f["splits"].attrs["method"] == "official:database_split"
    r = _convert(camus_nifti / "database_nifti" / "patient0004", tmp_path / "b.h5", "--split", "random")
    assert r.exit_code == 0 and "4 samples, 1 patients" in r.output
    wrong = _convert(camus_nifti, tmp_path / "c.h5", "--format", "mhd")
    assert wrong.exit_code == 1 and "patient0001_2CH_ED.mhd" in wrong.output
    assert not (tmp_path / "c.h5").exists()


@pytest.mark.parametrize("args, message", [
    (["--views", "3CH"], "--views must be"),
    (["--frames", "all"], "'all' is not one of 'ed-es', 'sequence'"),
    (["--scribbles", "synth:no-such-algo"], "no-such-algo"),
    (["--scribbles", "manual"], "--scribbles"),
    (["--fold", "2"], "--fold needs the 10-fold lists"),
    (["--split", "random", "--fold", "2"], "--fold selects an official fold"),
    (["--norm", "clahe"], "'clahe' is not one of 'percentile-iqr', 'zscore'"),
])
def test_cli_bad_options(camus_nifti: Path, tmp_path: Path, args: list[str], message: str) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    r = _convert(camus_nifti, out_dir / "x.h5", *args)
    usage = "is not one of" in message  # outside a fixed set of choices: Click's usage error, naming them
    assert r.exit_code == (2 if usage else 1) and message in unboxed(r.output), r.output
    _nothing_left(out_dir)


def test_cli_scribbles_none(camus_nifti: Path, tmp_path: Path) -> None:
    r = _convert(camus_nifti / "database_nifti" / "patient0001", tmp_path / "x.h5", "--scribbles", "none",
                 "--split", "random")
    assert r.exit_code == 0, r.output
    with h5py.File(tmp_path / "x.h5") as f:
        assert (f["scribbles"][:] == 255).all() and set(f["meta/scribble_source"].asstr()[:]) == {"none"}


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _break(kind: str, root: Path) -> Path:
    """Damage one file of patient0002 the way real downloads break; return the file to be named."""
    sub = "database_nifti" if (root / "database_nifti").exists() else "training"
    d = root / sub / "patient0002"
    if kind == "truncated-raw":
        p = d / "patient0002_4CH_ES.raw"
        _truncate(p)
    elif kind == "truncated-nii":
        p = d / "patient0002_2CH_ED.nii.gz"
        _truncate(p)
    elif kind == "missing-gt":
        p = d / f"patient0002_2CH_ES_gt{'.nii.gz' if sub == 'database_nifti' else '.mhd'}"
        p.unlink()
    elif kind == "bad-cfg":
        p = d / "Info_4CH.cfg"
        p.write_text(p.read_text().replace("ES: ", "ES: late"))
    elif kind == "cfg-no-colon":
        p = d / "Info_2CH.cfg"
        p.write_text("ED 1\n" + p.read_text())
    elif kind == "geometry":  # a ground truth on another grid: one row short
        import SimpleITK as sitk

        p = d / "patient0002_2CH_ED_gt.nii.gz"
        img = sitk.ReadImage(str(p))
        sitk.WriteImage(img[:, :-1], str(p))
    elif kind == "labels":
        import SimpleITK as sitk

        p = d / "patient0002_4CH_ED_gt.nii.gz"
        img = sitk.ReadImage(str(p))
        sitk.WriteImage(img * 2, str(p))
    else:
        raise AssertionError(kind)
    return p


BAD = [("truncated-raw", "mhd", "truncated"), ("truncated-nii", "nifti", "truncated"),
       ("missing-gt", "nifti", "missing ground truth"), ("missing-gt", "mhd", "missing ground truth"),
       ("bad-cfg", "nifti", "ES is not a number"), ("cfg-no-colon", "mhd", "line 1 is not 'Key: Value'"),
       ("geometry", "nifti", "mismatched geometry"), ("labels", "nifti", "outside 0-3")]


@pytest.mark.parametrize("kind, release, reason", BAD)
def test_cli_bad_input_names_the_file(kind: str, release: str, reason: str, nifti_copy: Path, mhd_copy: Path,
                                      tmp_path: Path) -> None:
    root = nifti_copy if release == "nifti" else mhd_copy
    bad = _break(kind, root)
    before = tree_digest(root)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    r = _convert(root, out_dir / "camus.h5")
    assert r.exit_code == 1
    assert f"error: {bad}" in r.output and reason in r.output, r.output
    _nothing_left(out_dir)
    assert tree_digest(root) == before
    # --on-error skip: the rest converts, the bad patient is recorded with the reason
    r = _convert(root, out_dir / "camus.h5", "--on-error", "skip")
    assert r.exit_code == 0, r.output
    assert "skipped patient0002" in r.output and reason in r.output
    with h5py.File(out_dir / "camus.h5") as f:
        assert "patient0002" not in set(f["meta/patient"].asstr()[:])
        assert "patient0002" in f.attrs["skipped"] and reason in f.attrs["skipped"]
    assert validate_store(out_dir / "camus.h5") == []


def test_sequence_frame_beyond_cfg(nifti_copy: Path, tmp_path: Path) -> None:
    cfg = nifti_copy / "database_nifti" / "patient0001" / "Info_2CH.cfg"
    cfg.write_text(cfg.read_text().replace("ES: ", "ES: 9"))  # e.g. ES: 912, beyond the half sequence
    r = _convert(nifti_copy, tmp_path / "s.h5", "--frames", "sequence")
    assert r.exit_code == 1 and f"error: {cfg}" in r.output and "beyond the" in r.output
    assert not (tmp_path / "s.h5").exists()


def test_missing_sequence_file(nifti_copy: Path, tmp_path: Path) -> None:
    seq = nifti_copy / "database_nifti" / "patient0003" / "patient0003_4CH_half_sequence.nii.gz"
    seq.unlink()
    r = _convert(nifti_copy, tmp_path / "s.h5", "--frames", "sequence")
    assert r.exit_code == 1 and f"error: {seq}" in r.output
    assert _convert(nifti_copy, tmp_path / "e.h5").exit_code == 0  # ED/ES frames do not need it


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    r = _convert(tmp_path / "empty", tmp_path / "x.h5")
    assert r.exit_code == 1 and "no camus patients found" in r.output
    assert not (tmp_path / "x.h5").exists()


def test_patient_in_training_and_testing(mhd_copy: Path, tmp_path: Path) -> None:
    import shutil

    dup = mhd_copy / "testing" / "patient0001"
    shutil.copytree(mhd_copy / "training" / "patient0001", dup)
    r = _convert(mhd_copy, tmp_path / "d.h5")
    assert r.exit_code == 1 and f"error: {dup}" in r.output and "found twice" in r.output
    assert _convert(mhd_copy / "training", tmp_path / "t.h5").exit_code == 0  # one folder at a time


def test_mixed_formats_need_format(nifti_copy: Path, tmp_path: Path) -> None:
    d = nifti_copy / "database_nifti" / "patient0001"
    (d / "patient0001_2CH_ED.mhd").write_text("NDims = 2\n")
    r = _convert(nifti_copy, tmp_path / "m.h5")
    assert r.exit_code == 1 and f"error: {d}" in r.output and "--format" in r.output


def test_synthetic_scribbles_and_two_workers(camus_nifti: Path, tmp_path: Path) -> None:
    """--scribbles synth:ALGO goes through the shared scribble registry, in the worker processes."""
    import numpy as np

    r = _convert(camus_nifti, tmp_path / "s.h5", "--scribbles", "synth:skeleton", "-j", "2")
    assert r.exit_code == 0, r.output
    assert validate_store(tmp_path / "s.h5") == []
    with h5py.File(tmp_path / "s.h5") as f:
        assert set(f["meta/scribble_source"].asstr()[:]) == {"synthetic:skeleton"}
        sc, masks = f["scribbles"][:], f["masks"][:]
    drawn = sc != 255
    assert (sc[drawn] == masks[drawn]).all()  # a scribble pixel carries the mask's class
    assert {int(c) for c in np.unique(sc[drawn])} >= {1, 2, 3}
    bad = _convert(camus_nifti, tmp_path / "t.h5", "--scribble-thickness", "3")
    assert bad.exit_code == 1 and "only applies to --scribbles synth:ALGO" in bad.output


def test_single_slice_3d_mhd_frames(mhd_copy: Path, tmp_path: Path) -> None:
    """ED / ES files written as W x H x 1 volumes (as some MHD copies are) convert like 2D ones."""
    import SimpleITK as sitk

    d = mhd_copy / "training" / "patient0001"
    for name in ("patient0001_2CH_ED", "patient0001_2CH_ED_gt"):
        img = sitk.ReadImage(str(d / f"{name}.mhd"))
        vol = sitk.JoinSeries(img)
        vol.SetSpacing((*img.GetSpacing(), 1.0))
        sitk.WriteImage(vol, str(d / f"{name}.mhd"))
    assert sitk.ReadImage(str(d / "patient0001_2CH_ED.mhd")).GetDimension() == 3
    r = _convert(d, tmp_path / "p.h5", "--split", "random")
    assert r.exit_code == 0, r.output
    with h5py.File(tmp_path / "p.h5") as f:
        assert (f["label_state"][:] == 1).all() and f["images"].shape[0] == 4


def test_list_sub_groups_inside_training_when_src_is_the_release_root(mhd_copy: Path, tmp_path: Path) -> None:
    """The MHD release may keep listSubGroups/ in training/: the official folds, not a stratified split."""
    (mhd_copy / "listSubGroups").rename(mhd_copy / "training" / "listSubGroups")
    r = _convert(mhd_copy, tmp_path / "m.h5", "--views", "2CH", "--fold", "2")
    assert r.exit_code == 0, r.output
    where = mhd_copy / "training" / "listSubGroups"
    assert f"split: official listSubGroups/subGroup2 (fold 2), from {where}" in r.output
    with h5py.File(tmp_path / "m.h5") as f:
        assert f["splits"].attrs["method"] == "official:listSubGroups/subGroup2"
        listed = (where / "subGroup2_testing.txt").read_text().split()
        test = sorted(set(f["meta/patient"].asstr()[f["splits/test"][:]]))
        assert test == sorted(listed) and f"from {where}" in f.attrs["notes"]
    r = _convert(mhd_copy, tmp_path / "d.h5", "--views", "2CH")
    assert r.exit_code == 0 and "(fold 1, the default; --fold K for another)" in r.output
    r = _convert(mhd_copy, tmp_path / "r.h5", "--views", "2CH", "--split", "random")
    assert r.exit_code == 0 and f"split: random as asked; the official lists in {where} are not used" in r.output
    shutil.rmtree(where)
    r = _convert(mhd_copy, tmp_path / "s.h5", "--views", "2CH")
    assert r.exit_code == 0, r.output
    assert f"split: stratified on image_quality: no database_split/ or listSubGroups/ found (looked in " \
           f"{mhd_copy}, {mhd_copy / 'training'})" in r.output
