"""`datakit convert camus`: both releases, orientation, mm^2 areas, sequences, patients table."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import SimpleITK as sitk

from datakit.store import validate_store
from tests.camus.helpers import convert_store


@pytest.fixture(scope="module")
def nifti_store(camus_nifti: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_store(camus_nifti, tmp_path_factory.mktemp("s") / "camus.h5", size=128)


@pytest.fixture(scope="module")
def nifti_seq_store(camus_nifti: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_store(camus_nifti, tmp_path_factory.mktemp("s") / "seq.h5", frames="sequence")


@pytest.fixture(scope="module")
def mhd_seq_store(camus_mhd: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_store(camus_mhd, tmp_path_factory.mktemp("s") / "mhd_seq.h5", frames="sequence")


def _text(a) -> list[str]:
    return [x.decode() if isinstance(x, bytes) else str(x) for x in a]


def _cfg(path: Path) -> dict[str, str]:
    return dict(line.split(": ") for line in path.read_text().splitlines())


def test_nifti_ed_es_store(nifti_store: Path, camus_nifti: Path) -> None:
    assert validate_store(nifti_store) == []
    with h5py.File(nifti_store) as f:
        assert json.loads(f.attrs["classes"]) == ["background", "LV", "MYO", "LA"]
        assert f["images"].shape == (5 * 2 * 2, 1, 128, 128)
        assert f["images"].attrs["normalization"] == "zscore per image"
        assert sorted(set(_text(f["meta/frame"][:]))) == ["ED", "ES"]
        assert sorted(set(_text(f["meta/view"][:]))) == ["2CH", "4CH"]
        assert set(_text(f["meta/dataset"][:])) == {"camus"}
        assert _text(f["meta/source"][:1]) == ["database_nifti/patient0001/patient0001_2CH_ED.nii.gz"]
        assert (f["label_state"][:] == 1).all()  # every ED/ES mask has the three structures
        img = f["images"][0, 0]
        assert abs(img.mean()) < 1e-4 and abs(img.std() - 1) < 1e-4  # z-scored per stored image
        # official split: the database_split lists, by patient
        assert f["splits"].attrs["method"] == "official:database_split"
        patients = np.array(_text(f["meta/patient"][:]))
        for name, file in (("train", "training"), ("valid", "validation"), ("test", "testing")):
            listed = (camus_nifti / "database_split" / f"subgroup_{file}.txt").read_text().split()
            assert sorted(set(patients[f["splits"][name][:]])) == sorted(listed)


def test_patients_table_from_info_cfg(nifti_store: Path, camus_nifti: Path) -> None:
    with h5py.File(nifti_store) as f:
        p = f["patients"]
        ids = _text(p["id"][:])
        i = ids.index("patient0003")
        c2 = _cfg(camus_nifti / "database_nifti" / "patient0003" / "Info_2CH.cfg")
        c4 = _cfg(camus_nifti / "database_nifti" / "patient0003" / "Info_4CH.cfg")
        assert p["ef"][i] == float(c2["EF"]) and p["age"][i] == float(c2["Age"])
        assert _text(p["sex"][:])[i] == c2["Sex"]
        assert _text(p["image_quality_2ch"][:])[i] == c2["ImageQuality"]
        assert _text(p["image_quality_4ch"][:])[i] == c4["ImageQuality"]
        rank = {"Good": 0, "Medium": 1, "Poor": 2}
        worst = max(c2["ImageQuality"], c4["ImageQuality"], key=rank.get)
        assert _text(p["image_quality"][:])[i] == worst
        assert p["frame_rate_4ch"][i] == float(c4["FrameRate"])
        assert p["nb_frames_2ch"][i] == float(c2["NbFrame"]) and p["es_frame_4ch"][i] == float(c4["ES"])
        assert p["ef"].dtype == np.float64 and p["frame_rate_2ch"].dtype == np.float64
        assert p["frame_rate"][i] == float(c2["FrameRate"])  # docs/store.md's patient column: the first view's


def test_every_sample_traces_to_its_own_frame_file(nifti_store: Path, camus_nifti: Path) -> None:
    """ED and ES are two files: each sample's meta/source names the one its image came from."""
    with h5py.File(nifti_store) as f:
        frames, views, sources = (_text(f["meta"][k][:]) for k in ("frame", "view", "source"))
        patients = _text(f["meta/patient"][:])
    for frame, view, source, pid in zip(frames, views, sources, patients, strict=True):
        assert Path(source).name == f"{pid}_{view}_{frame}.nii.gz"
        assert (camus_nifti / source).is_file()


def test_orientation_lv_above_la(nifti_store: Path) -> None:
    with h5py.File(nifti_store) as f:
        masks = f["masks"][:]
    rows = np.arange(masks.shape[1])[:, None]
    for m in masks:
        lv_row = (rows * (m == 1)).sum() / (m == 1).sum()
        la_row = (rows * (m == 3)).sum() / (m == 3).sum()
        assert lv_row < la_row  # apex at the top: the LV sits above the atrium
        assert (m[:2] == 0).all()  # nothing above the sector apex


@pytest.mark.parametrize("label", [1, 2, 3])
def test_areas_in_mm2_survive_the_resize(nifti_store: Path, camus_nifti: Path, label: int) -> None:
    with h5py.File(nifti_store) as f:
        frames, views, patients = (_text(f[f"meta/{k}"][:]) for k in ("frame", "view", "patient"))
        spacing, masks = f["meta/spacing"][:], f["masks"][:]
    ratios = []
    for i in range(len(masks)):
        gt = sitk.ReadImage(str(camus_nifti / "database_nifti" / patients[i] /
                                f"{patients[i]}_{views[i]}_{frames[i]}_gt.nii.gz"))
        sx, sy = gt.GetSpacing()
        source_mm2 = (sitk.GetArrayFromImage(gt) == label).sum() * sx * sy
        stored_mm2 = (masks[i] == label).sum() * spacing[i][0] * spacing[i][1]
        # coarse phantom pixels (a 4-pixel wall): each image within pixel noise, no bias overall
        assert stored_mm2 == pytest.approx(source_mm2, rel=0.08)
        ratios.append(stored_mm2 / source_mm2)
        # the stored spacing is the source spacing scaled by the resize, per axis
        h, w = sitk.GetArrayFromImage(gt).shape
        assert spacing[i] == pytest.approx([sy * h / 128, sx * w / 128], rel=1e-5)
    assert np.mean(ratios) == pytest.approx(1.0, abs=0.02)


def test_nifti_sequences(nifti_seq_store: Path, camus_nifti: Path, tmp_path: Path) -> None:
    assert validate_store(nifti_seq_store) == []
    with h5py.File(nifti_seq_store) as f:
        frames, views, patients = (_text(f[f"meta/{k}"][:]) for k in ("frame", "view", "patient"))
        total = 0
        for pid in sorted(set(patients)):
            for v in ("2CH", "4CH"):
                nb = int(_cfg(camus_nifti / "database_nifti" / pid / f"Info_{v}.cfg")["NbFrame"])
                sel = [i for i in range(len(frames)) if patients[i] == pid and views[i] == v]
                assert [frames[i] for i in sel] == [str(n) for n in range(1, nb + 1)]
                total += nb
        assert len(frames) == total
        assert (f["label_state"][:] == 1).all()  # half_sequence_gt: every frame has its mask
        # frame 1 of the half sequence is the ED frame: the same stored pixels as the ED file
        fi = [i for i in range(len(frames)) if (patients[i], views[i], frames[i]) == ("patient0002", "4CH", "1")][0]
        ed = convert_store(camus_nifti / "database_nifti" / "patient0002", tmp_path / "ed.h5", views="4CH")
        with h5py.File(ed) as e:
            assert np.allclose(f["images"][fi], e["images"][0], atol=1e-5)
            assert np.array_equal(f["masks"][fi], e["masks"][0]) and _text(e["meta/frame"][:1]) == ["ED"]
        assert _text(f["meta/source"][fi:fi + 1]) == \
            ["database_nifti/patient0002/patient0002_4CH_half_sequence.nii.gz"]


def test_mhd_sequences_ed_es_masks_only(mhd_seq_store: Path, camus_mhd: Path) -> None:
    assert validate_store(mhd_seq_store) == []
    reversed_seen = False
    with h5py.File(mhd_seq_store) as f:
        frames, views, patients = (_text(f[f"meta/{k}"][:]) for k in ("frame", "view", "patient"))
        states, masks = f["label_state"][:], f["masks"][:]
        for pid in sorted(set(patients)):
            sub = "testing" if pid == "patient0006" else "training"
            for v in ("2CH", "4CH"):
                cfg = _cfg(camus_mhd / sub / pid / f"Info_{v}.cfg")
                ed, es = int(cfg["ED"]), int(cfg["ES"])
                reversed_seen |= ed > es
                sel = [i for i in range(len(frames)) if patients[i] == pid and views[i] == v]
                assert len(sel) == int(cfg["NbFrame"])
                for i in sel:
                    known = sub == "training" and int(frames[i]) in (ed, es)
                    assert (states[i] == 1).all() if known else (states[i] == -1).all()
                    assert (masks[i] == 255).all() != known
                if sub == "training":  # the ED frame carries the ED mask, wherever ED falls
                    i_ed = sel[ed - 1]
                    gt = sitk.GetArrayFromImage(sitk.ReadImage(str(camus_mhd / sub / pid /
                                                                   f"{pid}_{v}_ED_gt.mhd")))
                    assert (masks[i_ed] == 1).sum() == pytest.approx((gt == 1).sum() * 64 * 64 / gt.size, rel=0.1)
    assert reversed_seen, "the phantoms should include a patient with ED after ES"


def test_mhd_ed_es_with_unlabelled_testing_patient(camus_mhd: Path, tmp_path: Path) -> None:
    out = convert_store(camus_mhd, tmp_path / "mhd.h5", views="4CH", size=48)
    assert validate_store(out) == []
    with h5py.File(out) as f:
        patients = _text(f["meta/patient"][:])
        assert set(_text(f["meta/view"][:])) == {"4CH"} and len(patients) == 12
        states = f["label_state"][:]
        test_rows = [i for i, p in enumerate(patients) if p == "patient0006"]
        assert (states[test_rows] == -1).all() and (f["masks"][test_rows[0]] == 255).all()
        assert (np.delete(states, test_rows, axis=0) == 1).all()
        assert _text(f["meta/source"][:1]) == ["training/patient0001/patient0001_4CH_ED.mhd"]
        assert f["splits"].attrs["method"] == "official:listSubGroups/subGroup1"
        assert "patient0006" in f.attrs["notes"]  # no ground truth, and in no fold
        ef = f["patients/ef"][:]
        cfg = _cfg(camus_mhd / "training" / "patient0002" / "Info_4CH.cfg")
        assert ef[_text(f["patients/id"][:]).index("patient0002")] == float(cfg["LVef"])
        assert np.isnan(f["patients/frame_rate_4ch"][:]).all()  # the MHD release has no FrameRate


def test_nifti_half_sequence_running_es_to_ed(nifti_copy: Path, tmp_path: Path) -> None:
    """Some real half sequences run ES -> ED (ED > ES in Info): frame ED still carries the ED mask."""
    folder = nifti_copy / "database_nifti" / "patient0002"
    for name in ("patient0002_4CH_half_sequence.nii.gz", "patient0002_4CH_half_sequence_gt.nii.gz"):
        img = sitk.ReadImage(str(folder / name))
        flipped = sitk.GetImageFromArray(sitk.GetArrayFromImage(img)[::-1].copy())
        flipped.CopyInformation(img)
        sitk.WriteImage(flipped, str(folder / name))
    cfg_path = folder / "Info_4CH.cfg"
    cfg = _cfg(cfg_path)
    nb = int(cfg["NbFrame"])
    assert (int(cfg["ED"]), int(cfg["ES"])) == (1, nb)  # the phantom ran ED -> ES
    cfg_path.write_text(cfg_path.read_text().replace("ED: 1\n", f"ED: {nb}\n").replace(f"ES: {nb}\n", "ES: 1\n"))
    seq = convert_store(folder, tmp_path / "seq.h5", frames="sequence", views="4CH", size=48, split="random")
    ed_es = convert_store(folder, tmp_path / "edes.h5", views="4CH", size=48, split="random")
    assert validate_store(seq) == []
    with h5py.File(seq) as f, h5py.File(ed_es) as e:
        frames = _text(f["meta/frame"][:])
        assert frames == [str(i) for i in range(1, nb + 1)]
        assert f["patients/ed_frame_4ch"][0] == nb and f["patients/es_frame_4ch"][0] == 1
        ed, es = frames.index(str(nb)), frames.index("1")
        assert _text(e["meta/frame"][:]) == ["ED", "ES"]
        assert np.array_equal(f["masks"][ed], e["masks"][0]) and np.array_equal(f["masks"][es], e["masks"][1])
        assert (f["masks"][ed] == 1).sum() > (f["masks"][es] == 1).sum()  # the LV is largest at ED
