"""`datakit splines-to-masks unity`: the store's masks, label states, keypoints and notes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from datakit.store import validate_store
from tests.cli_help import unboxed
from tests.unity.helpers import HEX, convert, label_instance, notes_of


def test_store_is_valid_with_masks_states_keypoints(unity_store: Path, unity_phantoms: Path) -> None:
    assert validate_store(unity_store) == []
    with h5py.File(unity_store) as f:
        assert json.loads(f.attrs["classes"]) == ["background", "LV", "MYO", "LA", "RV", "RA"]
        assert f["images"].shape == (10, 1, 96, 96) and f["images"].attrs["normalization"] == "scale:1/255"
        masks, states = f["masks"][:], f["label_state"][:]
        assert set(np.unique(masks)) == {0, 1, 2, 3, 4, 5}
        assert (states == 0).any() and (states == -1).any()  # off RA, blurred RV
        for m, s in zip(masks, states, strict=True):  # a state of 1 exactly when the class has pixels
            present = np.bincount(m.ravel(), minlength=6) > 0
            assert ((s == 1) == present).all()
        kp = f["keypoints"]
        assert json.loads(kp.attrs["names"])[0] == "mv-ant-hinge"
        assert (kp[:, :, 2] == 1).any() and (kp[:, :, 2] == -1).any()
        assert np.isnan(f["meta/spacing"][:]).all()
        patients = [p.decode() for p in f["meta/patient"][:]]
        assert all(HEX.match(p) for p in patients) and len(set(patients)) == 5
        assert {d.decode() for d in f["meta/dataset"][:]} == {"unity"}
        src = f["meta/source"][0].decode()
        assert src.startswith("png-cache/") and (unity_phantoms / src).is_file()
        assert f["meta/source_shape"][0].tolist() == [120, 160]
        # letterbox: 120 x 160 -> 72 x 96, padded 12 rows above and below
        assert (masks[:, :12] == 0).all() and (masks[:, -12:] == 0).all()


def test_masks_and_keypoints_line_up_with_the_stored_image(unity_store: Path) -> None:
    with h5py.File(unity_store) as f:
        images, masks, kp = f["images"][:, 0], f["masks"][:], f["keypoints"][:]
        names = json.loads(f["keypoints"].attrs["names"])
    apex = names.index("lv-apex-endo")
    for img, m, k in zip(images, masks, kp, strict=True):
        # the phantom's blood pool is dark and its myocardium bright, in the stored image too
        assert img[m == 1].mean() < 0.5 * img[m == 2].mean()
        # the endocardial apex point lies on the LV contour
        x, y, vis = k[apex]
        assert vis == 1
        rows, cols = np.nonzero(m == 1)
        assert np.hypot(cols - x, rows - y).min() < 1.5
        assert y < rows.mean()  # apex up


def test_degenerate_labels_keep_the_frame_and_are_summarised(unity_copy: Path, tmp_path: Path) -> None:
    """2-point and NaN curves as real exports hold them: the default (stop) conversion goes through."""
    manifest = tmp_path / "walls.json"
    manifest.write_text(json.dumps({
        "classes": ["background", "LV", "WALL", "RV"],
        "rules": [{"class": "WALL", "mode": "line", "curves": ["curve-lv-antsep-rv"], "thickness": 1},
                  {"class": "LV", "mode": "fill", "curves": ["curve-lv-endo"]},
                  {"class": "RV", "mode": "fill", "curves": ["curve-rv-endo"]}],
        "points": ["mv-ant-hinge"]}))
    labels = json.loads((unity_copy / "labels-all.json").read_text())
    names = sorted(labels)
    two, nan, both = names[0], names[3], names[5]
    label_instance(labels[two], "curve-lv-antsep-rv").update(x="10 60", y="20 20")  # a line: drawn as a segment
    label_instance(labels[nan], "curve-lv-endo").update(x="10 NaN 30 40", y="5 6 7 8")  # unbuildable: LV -1
    label_instance(labels[both], "curve-rv-endo").update(x="10 20", y="30 40")  # a 2-point fill: RV -1
    label_instance(labels[both], "mv-ant-hinge").update(x="nan", y="3")  # keypoint unknown
    label_instance(labels[names[1]], "curve-lv-endo")["straight_segment"] = "1 0"  # unreadable: ignored, said
    (unity_copy / "labels-all.json").write_text(json.dumps(labels))
    res = convert(unity_copy, tmp_path / "d.h5", "--classes", str(manifest), "--size", "64")
    assert res.exit_code == 0, res.output
    assert "degenerate labels: 4 in 3 frame(s) (1 2-point line curve(s) drawn as straight segments, " \
           "3 left out as unknown, label state -1)" in res.output
    with h5py.File(tmp_path / "d.h5") as f:
        notes = notes_of(f)
        frame = {Path(s.decode()).name: i for i, s in enumerate(f["meta/source"][:])}
        assert f["images"].shape[0] == 10  # every frame kept
        assert f["label_state"][frame[two], 2] == 1 and (f["masks"][frame[two]] == 2).any()
        assert f["label_state"][frame[nan], 1] == -1 and not (f["masks"][frame[nan]] == 1).any()
        assert f["label_state"][frame[nan], 3] == 1
        assert f["label_state"][frame[both], 3] == -1 and f["keypoints"][frame[both], 0, 2] == -1
    assert f"degenerate label labels-all.json#{two}: label 'curve-lv-antsep-rv': curve has 2 distinct points; " \
           f"drawn as a straight segment" in notes
    assert any(n.startswith(f"degenerate label labels-all.json#{nan}: label 'curve-lv-endo': x holds a "
                            f"non-finite coordinate") for n in notes)
    assert any(n.startswith(f"degenerate label labels-all.json#{both}: label 'curve-rv-endo': curve has 2 "
                            f"distinct point(s)") for n in notes)
    assert any(n.startswith(f"degenerate label labels-all.json#{both}: label 'mv-ant-hinge'") for n in notes)
    assert any(n.startswith("degenerate labels: 4 in 3 frame(s)") for n in notes)
    assert f"labels-all.json#{names[1]}: label 'curve-lv-endo': straight_segment ignored (it has 2 value(s) " \
           f"for 11 control points)" in notes
    assert validate_store(tmp_path / "d.h5") == []


def test_off_as_unknown_option(unity_phantoms: Path, tmp_path: Path) -> None:
    """Videos 1 and 4 have their RA 'off': absent (0) by default, unknown (-1) with --off-as unknown."""
    states = {}
    for reading in ("absent", "unknown"):
        res = convert(unity_phantoms, tmp_path / f"{reading}.h5", "--size", "48", "--off-as", reading)
        assert res.exit_code == 0, res.output
        with h5py.File(tmp_path / f"{reading}.h5") as f:
            states[reading] = f["label_state"][:]
            assert f"--off-as {reading}" in f.attrs["command"]
        assert validate_store(tmp_path / f"{reading}.h5") == []
    ra = json.loads(h5py.File(tmp_path / "absent.h5").attrs["classes"]).index("RA")
    assert (states["absent"][:, ra] == 0).sum() == 4 and (states["unknown"][:, ra] == 0).sum() == 0
    changed = states["absent"] != states["unknown"]
    assert changed.any() and (states["absent"][changed] == 0).all() and (states["unknown"][changed] == -1).all()
    res = convert(unity_phantoms, tmp_path / "x.h5", "--off-as", "maybe")
    assert res.exit_code == 2 and "'maybe' is not one of 'absent', 'unknown'" in unboxed(res.output)


def test_custom_classes_with_a_line_rule(unity_phantoms: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "lv_only.json"
    manifest.write_text(json.dumps({
        "classes": ["background", "LV", "WALL"],
        "rules": [{"class": "WALL", "mode": "line", "curves": ["curve-lv-antsep-rv", "curve-lv-post-epi"],
                   "thickness": 2},
                  {"class": "LV", "mode": "fill", "curves": ["curve-lv-endo"]}],
        "points": ["lv-apex-endo"]}))
    res = convert(unity_phantoms, tmp_path / "lv.h5", "--classes", str(manifest), "--size", "64",
                  "--labels", "labels-ival.json")
    assert res.exit_code == 0, res.output
    assert "labels not in the class manifest, ignored" in res.output
    with h5py.File(tmp_path / "lv.h5") as f:
        assert json.loads(f.attrs["classes"]) == ["background", "LV", "WALL"]
        assert set(np.unique(f["masks"][:])) == {0, 1, 2}
        assert f["keypoints"].shape == (2, 1, 3)
    assert validate_store(tmp_path / "lv.h5") == []


def test_relative_labels_name_is_looked_up_in_src_first(unity_copy: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    shutil.copy(unity_copy / "labels-tune.json", cwd / "labels-train.json")  # same name, other frames
    shutil.copy(unity_copy / "labels-tune.json", cwd / "only-here.json")
    monkeypatch.chdir(cwd)
    res = convert(unity_copy, tmp_path / "a.h5", "--labels", "labels-train.json", "--size", "64")
    assert res.exit_code == 0, res.output
    with h5py.File(tmp_path / "a.h5") as f:
        assert f["images"].shape[0] == 6  # SRC's labels-train.json (3 videos), not the 1-video file here
    res = convert(unity_copy, tmp_path / "b.h5", "--labels", "only-here.json", "--size", "64")
    assert res.exit_code == 0, res.output  # not in SRC: the current folder still counts
    with h5py.File(tmp_path / "b.h5") as f:
        assert f["images"].shape[0] == 2
