"""`datakit convert acdc` on generated ACDC phantoms (exact layout) and on the real patients."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from datakit.cli import app
from datakit.store import Store, validate_store
from tests.cli_help import unboxed
from tests.helpers import REPO, shared_data

runner = CliRunner()


def convert(src: Path, out: Path, *args: str):
    return runner.invoke(app, ["convert", "acdc", str(src), "--out", str(out), "--workers", "1", *args])


def _nothing_left(folder: Path) -> None:
    assert [p.name for p in folder.iterdir()] == [], "no store and no temporary file may be left"


def _patient(root: Path, n: int) -> Path:
    return root / "training" / f"patient{n:03d}"


def _frame_file(root: Path, n: int, kind: str = "") -> Path:
    info = dict(line.split(": ") for line in (_patient(root, n) / "Info.cfg").read_text().splitlines())
    return _patient(root, n) / f"patient{n:03d}_frame{int(info['ED']):02d}{kind}.nii.gz"


# -- the happy path ----------------------------------------------------------------------------------

def test_store_contents_match_sources(acdc_store: Path, acdc_phantoms: Path) -> None:
    assert validate_store(acdc_store) == []
    with Store(acdc_store) as s:
        assert s.classes == ["background", "RV", "MYO", "LV"]
        assert s.image_size == (224, 224)
        n_slices = 0
        for d in sorted((acdc_phantoms / "training").iterdir()):
            for f in d.glob("*_frame??.nii.gz"):
                n_slices += nib.load(f).shape[2]
        assert len(s) == n_slices
        assert set(s.meta["frame"]) == {"ED", "ES"} and set(s.meta["view"]) == {"SAX"}
        assert np.allclose(s.meta["spacing"], 1.51)
        thickness = {d.name: float(nib.load(next(d.glob("*_frame??.nii.gz"))).header.get_zooms()[2])
                     for d in (acdc_phantoms / "training").iterdir()}
        for pid, th in zip(s.meta["patient"], s.meta["slice_spacing"], strict=True):
            assert th == pytest.approx(thickness[pid])
        assert set(s.meta["scribble_source"]) == {"manual"}
        assert s.file["images"].attrs["normalization"] == "percentile_iqr:5-95"
        # provenance: every sample traces back to an existing source file
        assert all((acdc_phantoms / src).is_file() for src in set(s.meta["source"]))


def test_slices_are_the_source_slices_resampled(acdc_store: Path, acdc_phantoms: Path) -> None:
    """Mask area in mm^2 per slice matches the source's, slice by slice, for every class."""
    with Store(acdc_store) as s:
        i = int(np.flatnonzero((s.meta["patient"] == "patient002") & (s.meta["frame"] == "ED"))[3])
        gt_path = acdc_phantoms / s.meta["source"][i].replace(".nii.gz", "_gt.nii.gz")
        gt = nib.load(gt_path)
        src = np.asarray(gt.dataobj)[:, :, s.meta["slice"][i]]
        sp = gt.header.get_zooms()[0]
        for c in (1, 2, 3):
            a_src, a_store = (src == c).sum() * sp**2, (s[i]["mask"] == c).sum() * 1.51**2
            assert abs(a_store - a_src) / a_src < 0.05, c


def test_scribbles_keep_valvano_labels_and_unlabelled_becomes_255(acdc_store: Path) -> None:
    with Store(acdc_store) as s:
        values = set(np.unique(np.concatenate([b for _, b in s.iter_chunks("scribbles")])).tolist())
        assert values == {0, 1, 2, 3, 255}
        masks = np.concatenate([b for _, b in s.iter_chunks("masks")])
        scribbles = np.concatenate([b for _, b in s.iter_chunks("scribbles")])
        labelled = scribbles != 255
        assert (scribbles[labelled] == masks[labelled]).mean() > 0.99


def test_patients_table_from_info_cfg(acdc_store: Path, acdc_phantoms: Path) -> None:
    with Store(acdc_store) as s:
        p = s.patients
        assert p["id"].tolist() == [f"patient{i:03d}" for i in range(1, 5)]
        info = dict(line.split(": ") for line in (_patient(acdc_phantoms, 3) / "Info.cfg").read_text().splitlines())
        assert p["group"][2] == info["Group"]
        assert p["height"][2] == float(info["Height"]) and p["weight"][2] == float(info["Weight"])
        assert p["nb_frames"][2] == float(info["NbFrame"]) and p["ed_frame"][2] == float(info["ED"])


def test_phantom_lv_contracts_from_ed_to_es(acdc_store: Path) -> None:
    with Store(acdc_store) as s:
        masks = np.concatenate([b for _, b in s.iter_chunks("masks")])
        for pid in set(s.meta["patient"]):
            ed = (masks[(s.meta["patient"] == pid) & (s.meta["frame"] == "ED")] == 3).sum()
            es = (masks[(s.meta["patient"] == pid) & (s.meta["frame"] == "ES")] == 3).sum()
            assert ed > 1.2 * es, pid


def test_parallel_workers_write_the_same_store(acdc_store: Path, acdc_phantoms: Path, tmp_path: Path) -> None:
    out = tmp_path / "par.h5"
    r = runner.invoke(app, ["convert", "acdc", str(acdc_phantoms), "--out", str(out), "--workers", "2"])
    assert r.exit_code == 0, r.output
    with h5py.File(acdc_store) as a, h5py.File(out) as b:
        for name in ("images", "masks", "scribbles", "label_state", "meta/patient", "meta/slice", "splits/train"):
            np.testing.assert_array_equal(a[name][()], b[name][()], err_msg=name)


def test_cli_summary_and_options(acdc_phantoms: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.h5"
    r = convert(acdc_phantoms, out, "--spacing", "2.0", "--size", "128", "--split", "random", "--seed", "5",
                "--ratios", "0.5,0.25,0.25", "--norm", "zscore")
    assert r.exit_code == 0, r.output
    assert "samples, 4 patients" in r.output and "0 skipped" in r.output
    with Store(out) as s:
        assert s.image_size == (128, 128) and np.allclose(s.meta["spacing"], 2.0)
        assert s.split_attrs["method"] == "random" and s.split_attrs["seed"] == 5
        assert s.split_attrs["ratios"].tolist() == [0.5, 0.25, 0.25]
        assert s.file["images"].attrs["normalization"] == "zscore"
        assert "--spacing 2.0" in s.attrs["command"]
    assert validate_store(out) == []


def test_accepts_root_training_or_patient_folder(acdc_phantoms: Path, tmp_path: Path) -> None:
    for i, src in enumerate([acdc_phantoms / "training", _patient(acdc_phantoms, 2)]):
        out = tmp_path / f"{i}.h5"
        assert convert(src, out).exit_code == 0
        with Store(out) as s:
            assert len(set(s.meta["patient"])) == (4 if i == 0 else 1)
    old = tmp_path / "old"  # older copies: <root>/database/training/patientXXX
    shutil.copytree(acdc_phantoms / "training", old / "database" / "training")
    assert convert(old, tmp_path / "old.h5").exit_code == 0
    with Store(tmp_path / "old.h5") as s:
        assert len(set(s.meta["patient"])) == 4


# -- scribble options --------------------------------------------------------------------------------

def test_scribbles_decided_per_frame(acdc_copy: Path, tmp_path: Path) -> None:
    _frame_file(acdc_copy, 2, "_scribble").unlink()
    out = tmp_path / "s.h5"
    assert convert(acdc_copy, out).exit_code == 0
    with Store(out) as s:
        missing = (s.meta["patient"] == "patient002") & (s.meta["frame"] == "ED")
        assert set(s.meta["scribble_source"][missing]) == {"none"}
        assert set(s.meta["scribble_source"][~missing]) == {"manual"}
        for i in np.flatnonzero(missing):
            assert (s[int(i)]["scribble"] == 255).all()
    assert validate_store(out) == []


def test_scribbles_none_and_folder(acdc_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "none.h5"
    assert convert(acdc_copy, out, "--scribbles", "none").exit_code == 0
    with Store(out) as s:
        assert set(s.meta["scribble_source"]) == {"none"}
        assert (np.concatenate([b for _, b in s.iter_chunks("scribbles")]) == 255).all()
    folder = tmp_path / "scribbles"
    folder.mkdir()
    for f in (acdc_copy / "training").glob("*/*_scribble.nii.gz"):
        shutil.move(str(f), folder / f.name)
    out2 = tmp_path / "dir.h5"
    r = convert(acdc_copy, out2, "--scribbles", str(folder))
    assert r.exit_code == 0, r.output
    with Store(out2) as s:
        assert set(s.meta["scribble_source"]) == {"manual"}
    r = convert(acdc_copy, tmp_path / "x.h5", "--scribbles", str(tmp_path / "nowhere"))
    assert r.exit_code == 1 and "--scribbles expects" in r.output


def test_split_file_reports_absent_patients(acdc_phantoms: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.h5"
    r = convert(acdc_phantoms, out, "--split", f"file:{REPO / 'manifests' / 'acdc_maag_split.json'}")
    assert r.exit_code == 0, r.output
    assert "absent from the data" in r.output
    with Store(out) as s:
        # phantoms 1-4: patient001 is MAAG-valid, 002/003 unpaired masks, 004 scribbled
        assert set(s.meta["patient"][s.splits["valid"]]) == {"patient001"}
        assert set(s.meta["patient"][s.splits["train_scribble"]]) == {"patient004"}
        assert set(s.meta["patient"][s.splits["train_masks"]]) == {"patient002", "patient003"}
        assert s.split_attrs["method"] == "file:acdc_maag_split.json"
    assert validate_store(out) == []


# -- bad input: exit 1, the file named, nothing left behind --------------------------------------------

def _fails(src: Path, tmp_path: Path, *expected: str) -> None:
    outdir = tmp_path / "out"
    outdir.mkdir(parents=True)
    r = convert(src, outdir / "s.h5")
    assert r.exit_code == 1, r.output
    for text in expected:
        assert text in r.output, r.output
    _nothing_left(outdir)


def test_truncated_file(acdc_copy: Path, tmp_path: Path) -> None:
    f = _frame_file(acdc_copy, 3)
    f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
    _fails(acdc_copy, tmp_path, str(f), "truncated gzip stream")


def test_truncated_uncompressed_data(acdc_copy: Path, tmp_path: Path) -> None:
    """A .nii.gz whose gzip stream is whole but whose voxel data stop short of the header's promise."""
    f = _frame_file(acdc_copy, 3, "_gt")
    raw = gzip.decompress(f.read_bytes())
    f.write_bytes(gzip.compress(raw[: len(raw) - 1000]))
    _fails(acdc_copy, tmp_path, str(f), "truncated:")


def test_unreadable_gzip_payload(acdc_copy: Path, tmp_path: Path) -> None:
    f = _frame_file(acdc_copy, 3, "_gt")
    f.write_bytes(gzip.compress(b"this is not a nifti header"))
    _fails(acdc_copy, tmp_path, str(f), "unreadable NIfTI")


def test_mask_shape_disagrees(acdc_copy: Path, tmp_path: Path) -> None:
    f = _frame_file(acdc_copy, 2, "_gt")
    img = nib.load(f)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:-4], img.affine), f)
    _fails(acdc_copy, tmp_path, str(f), "differs from its image's")


def test_mask_affine_disagrees(acdc_copy: Path, tmp_path: Path) -> None:
    f = _frame_file(acdc_copy, 2, "_gt")
    img = nib.load(f)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), img.affine * np.diag([1.2, 1, 1, 1])), f)
    _fails(acdc_copy, tmp_path, str(f), "affine differs")


def test_info_cfg_unparseable(acdc_copy: Path, tmp_path: Path) -> None:
    cfg = _patient(acdc_copy, 4) / "Info.cfg"
    cfg.write_text("ED: 1\nthis line has no colon\n")
    _fails(acdc_copy, tmp_path, str(cfg), "line 2 is not 'Key: Value'")
    cfg.write_text("ED: one\nES: 5\n")
    _fails(acdc_copy, tmp_path / "b", str(cfg), "ED is not a number")


def test_missing_frame(acdc_copy: Path, tmp_path: Path) -> None:
    f = _frame_file(acdc_copy, 1)
    f.unlink()
    _fails(acdc_copy, tmp_path, str(f), "missing ED frame file")


def test_label_values_out_of_range(acdc_copy: Path, tmp_path: Path) -> None:
    f = _frame_file(acdc_copy, 1, "_gt")
    img = nib.load(f)
    a = np.asarray(img.dataobj).copy()
    a[0, 0, 0] = 9
    nib.save(nib.Nifti1Image(a, img.affine), f)
    _fails(acdc_copy, tmp_path, str(f), "label values [0, 1, 2, 3, 9] outside 0-3")


def test_float_labels_must_be_whole_numbers(acdc_copy: Path, tmp_path: Path) -> None:
    """Float-typed label files occur and are accepted when whole; 1.5 is not a class."""
    f = _frame_file(acdc_copy, 1, "_gt")
    img = nib.load(f)
    a = np.asarray(img.dataobj).astype(np.float32)
    nib.save(nib.Nifti1Image(a, img.affine), f)
    assert convert(acdc_copy, tmp_path / "whole.h5").exit_code == 0
    a[0, 0, 0] = 1.5
    nib.save(nib.Nifti1Image(a, img.affine), f)
    _fails(acdc_copy, tmp_path, str(f), "label values are not whole numbers")


def test_skip_converts_the_rest_and_records_why(acdc_copy: Path, tmp_path: Path) -> None:
    f = _frame_file(acdc_copy, 3)
    f.write_bytes(b"garbage")
    out = tmp_path / "s.h5"
    r = convert(acdc_copy, out, "--on-error", "skip")
    assert r.exit_code == 0, r.output
    assert "skipped patient003" in r.output and "1 skipped" in r.output
    with Store(out) as s:
        assert "patient003" not in set(s.meta["patient"]) and len(set(s.meta["patient"])) == 3
        (skipped,) = json.loads(s.attrs["skipped"])
        assert skipped["patient"] == "patient003" and str(f) in skipped["reason"]
    assert validate_store(out) == []


def test_existing_output_needs_overwrite(acdc_phantoms: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.h5"
    out.write_bytes(b"precious")
    r = convert(acdc_phantoms, out)
    assert r.exit_code == 1 and "already exists; pass --overwrite" in r.output
    assert out.read_bytes() == b"precious"
    assert convert(acdc_phantoms, out, "--overwrite").exit_code == 0
    assert validate_store(out) == []


def test_output_folder_that_cannot_hold_a_store(acdc_phantoms: Path, tmp_path: Path) -> None:
    """--out under a missing folder, or under something that is not a folder: exit 1, naming it."""
    r = convert(acdc_phantoms, tmp_path / "missing" / "s.h5")
    assert r.exit_code == 1 and "output folder does not exist" in r.output and "missing" in r.output
    not_a_folder = tmp_path / "a_file"
    not_a_folder.write_bytes(b"x")
    r = convert(acdc_phantoms, not_a_folder / "s.h5")
    assert r.exit_code == 1 and f"{not_a_folder}: is not a folder" in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert not_a_folder.read_bytes() == b"x"


def test_sources_are_never_modified(acdc_copy: Path, tmp_path: Path) -> None:
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in acdc_copy.rglob("*") if p.is_file()}
    assert convert(acdc_copy, tmp_path / "s.h5").exit_code == 0
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in acdc_copy.rglob("*") if p.is_file()}
    assert before == after


def test_no_patients_found(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    r = convert(tmp_path / "empty", tmp_path / "s.h5")
    assert r.exit_code == 1 and "no acdc patients found" in r.output


# -- the real ACDC patients (../shared/data/acdc) ---------------------------------------------------------

def test_real_acdc_converts_and_validates(tmp_path: Path) -> None:
    root = shared_data("acdc")
    out = tmp_path / "acdc.h5"
    r = runner.invoke(app, ["convert", "acdc", str(root), "--out", str(out), "--workers", "2",
                            "--split", f"file:{REPO / 'manifests' / 'acdc_maag_split.json'}"])
    assert r.exit_code == 0, r.output
    assert "15 patient(s) of 'test' absent from the data" in r.output
    assert validate_store(out) == []
    with Store(out) as s:
        n_patients = len(list((root / "training").iterdir()))
        assert len(set(s.meta["patient"])) == n_patients == 85
        assert {k: len(set(s.meta["patient"][v])) for k, v in s.splits.items()} == \
            {"train_scribble": 35, "train_masks": 35, "valid": 15, "test": 0}
        assert set(s.meta["scribble_source"]) == {"manual"}
        # per-class scribble coverage close to the published figures for these scribbles (docs/maag.md)
        scribbles = np.concatenate([b for _, b in s.iter_chunks("scribbles", chunk=512)])
        cover = [(scribbles == c).mean() * 100 for c in range(4)]
        assert 0.3 < cover[0] < 1.3 and all(0.05 < c < 0.4 for c in cover[1:]), cover
        assert set(s.patients["group"]) == {"DCM", "HCM", "MINF", "NOR", "RV"}
        assert np.isnan(s.patients["height"]).all()  # not in these Info.cfg files: never invented


def test_unknown_option_values_are_refused_before_any_work(acdc_phantoms: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from datakit.sources.acdc import AcdcSource

    def no_reading(self, item):
        raise AssertionError(f"patient {item.patient} read before the options were checked")

    monkeypatch.setattr(AcdcSource, "read", no_reading)
    # a value outside an option's fixed choices is a usage error (exit 2) naming the choices
    for i, (args, text) in enumerate(((["--on-error", "ignore"], "'ignore' is not one of 'stop', 'skip'"),
                       (["--image-compression", "zstd"], "'zstd' is not one of 'none', 'gzip'"),
                       (["--image-dtype", "float64"], "'float64' is not one of 'float32', 'float16'"),
                       (["--norm", "histogram"], "'histogram' is not one of 'percentile-iqr', 'zscore', 'minmax', "
                                                 "'scale255', 'none'"),
                       (["--split", "bogus"], "unknown --split 'bogus'"),
                       (["--split", "kfold:5/7"], "expected kfold:K/FOLD"),
                       (["--split", "file:nowhere.json"], "nowhere.json: split file not found"),
                       (["--split", "official"], "acdc ships no official split; use random"))):
        outdir = tmp_path / str(i)
        outdir.mkdir()
        r = convert(acdc_phantoms, outdir / "s.h5", *args)
        assert r.exit_code == (2 if "is not one of" in text else 1) and text in unboxed(r.output), (args, r.output)
        assert "patient" not in r.output  # refused up front, not while reading a patient
        _nothing_left(outdir)
