"""``datakit export nnunet``: the export read back and checked against nnU-Net v2's documented rules."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from datakit.cli import app
from datakit.pipeline import ConvertOptions, convert
from datakit.sources.folder import FolderSource
from datakit.store import Store
from tests.folder_data import write_pairs

runner = CliRunner()


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def read(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Pixel array and affine (None for PNG)."""
    if path.name.endswith(".nii.gz"):
        img = nib.load(path)
        return np.asarray(img.dataobj), img.affine
    return np.asarray(Image.open(path)), None


def check_nnunet_rules(folder: Path) -> dict:
    """nnU-Net v2 dataset format (documentation/dataset_format.md), as verify_dataset_integrity checks it."""
    ds = json.loads((folder / "dataset.json").read_text())
    for key in ("channel_names", "labels", "numTraining", "file_ending"):
        assert key in ds, key
    labels = ds["labels"]
    values = sorted(labels.values())
    assert labels["background"] == 0 and values == list(range(len(values)))  # consecutive from 0
    if "ignore" in labels:
        assert labels["ignore"] == max(values)  # the ignore label must be the highest
    ending, n_channels = ds["file_ending"], len(ds["channel_names"])
    cases = sorted(p.name[: -len(ending)] for p in (folder / "labelsTr").iterdir())
    assert ds["numTraining"] == len(cases)
    per_channel = 1 if ending == ".png" else n_channels  # RGB PNG: one file holds the 3 channels
    expected = sorted(f"{c}_{k:04d}{ending}" for c in cases for k in range(per_channel))
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == expected
    for c in cases:
        lab, lab_affine = read(folder / "labelsTr" / f"{c}{ending}")
        assert set(np.unique(lab).tolist()) <= set(values), c
        for k in range(per_channel):
            img, img_affine = read(folder / "imagesTr" / f"{c}_{k:04d}{ending}")
            assert img.shape[:lab.ndim] == lab.shape, c  # matching geometry
            if lab_affine is not None:
                assert np.allclose(img_affine, lab_affine), c
    if (folder / "splits_final.json").exists():
        for fold in json.loads((folder / "splits_final.json").read_text()):
            assert set(fold) == {"train", "val"} and not set(fold["train"]) & set(fold["val"])
            assert set(fold["train"]) | set(fold["val"]) <= set(cases)
    return ds


def test_acdc_volumes_export_as_nifti_cases(acdc_store: Path, tmp_path: Path) -> None:
    r = run("export", "nnunet", acdc_store, tmp_path, "--dataset-id", "27", "--name", "ACDC")
    assert r.exit_code == 0, r.output
    folder = tmp_path / "Dataset027_ACDC"
    ds = check_nnunet_rules(folder)
    assert ds["file_ending"] == ".nii.gz" and ds["labels"] == {"background": 0, "RV": 1, "MYO": 2, "LV": 3}
    cases = json.loads((folder / "datakit_cases.json").read_text())
    with Store(acdc_store) as s:
        split_of = {p: k for k, idx in s.splits.items() for p in s.meta["patient"][idx]}
        n_test = len({(s.meta["patient"][i], s.meta["frame"][i]) for i in s.splits["test"]})
        assert len(list((folder / "imagesTs").iterdir())) == n_test
        for case, info in cases.items():
            part = "Ts" if info["split"] == "test" else "Tr"
            img = nib.load(folder / f"images{part}" / f"{case}_0000.nii.gz")
            lab = np.asarray(nib.load(folder / f"labels{part}" / f"{case}.nii.gz").dataobj)
            idx = info["samples"]
            assert s.meta["slice"][idx].tolist() == list(range(len(idx)))  # the whole volume, in order
            assert np.array_equal(lab, np.moveaxis(s.file["masks"][idx[0]:idx[-1] + 1], 0, -1))
            assert np.allclose(np.asarray(img.dataobj)[:, :, 1], s.file["images"][idx[1], 0])
            assert np.allclose(img.header.get_zooms(), [*s.meta["spacing"][idx[0]], s.meta["slice_spacing"][idx[0]]])
            assert split_of[info["patient"]] == (info["split"] or "")
        folds = json.loads((folder / "splits_final.json").read_text())
        patients = {c: cases[c]["patient"] for c in cases}
        train_p = {patients[c] for c in folds[0]["train"]}
        val_p = {patients[c] for c in folds[0]["val"]}
        assert not train_p & val_p  # patient-grouped: ED and ES of one patient never straddle folds
        assert val_p == set(s.meta["patient"][s.splits["valid"]])


def test_scribbles_export_uses_the_ignore_label(acdc_store: Path, tmp_path: Path) -> None:
    r = run("export", "nnunet", acdc_store, tmp_path, "--dataset-id", "28", "--name", "ACDCscribbles",
            "--labels", "scribbles")
    assert r.exit_code == 0, r.output
    folder = tmp_path / "Dataset028_ACDCscribbles"
    ds = check_nnunet_rules(folder)
    assert ds["labels"]["ignore"] == 4
    cases = json.loads((folder / "datakit_cases.json").read_text())
    case, info = next((c, i) for c, i in cases.items() if i["split"] != "test")
    lab = np.asarray(nib.load(folder / "labelsTr" / f"{case}.nii.gz").dataobj)
    with Store(acdc_store) as s:
        sc = np.moveaxis(s.file["scribbles"][info["samples"][0]:info["samples"][-1] + 1], 0, -1)
    assert np.array_equal(lab == 4, sc == 255) and np.array_equal(lab[sc != 255], sc[sc != 255])
    assert 0.0 < (lab < 4).mean() < 0.5  # sparse: most pixels are ignore


@pytest.fixture(scope="module")
def rgb_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("rgb")
    write_pairs(tmp / "polyps", [f"p{i}" for i in range(6)], size=(30, 40), rgb=True, mask_scale=1)
    out = tmp / "polyps.h5"
    convert(FolderSource(tmp / "polyps", classes=["background", "polyp"], size=32),
            ConvertOptions(out=out, workers=1, progress=False), log=lambda m: None)
    return out


def test_natural_images_export_as_rgb_png(rgb_store: Path, tmp_path: Path) -> None:
    r = run("export", "nnunet", rgb_store, tmp_path, "--dataset-id", "120", "--name", "Polyps")
    assert r.exit_code == 0, r.output
    folder = tmp_path / "Dataset120_Polyps"
    ds = check_nnunet_rules(folder)
    assert ds["file_ending"] == ".png" and ds["channel_names"] == {"0": "R", "1": "G", "2": "B"}
    cases = json.loads((folder / "datakit_cases.json").read_text())
    with Store(rgb_store) as s:
        for case, info in cases.items():
            part = "Ts" if info["split"] == "test" else "Tr"
            i = info["samples"][0]
            img = np.asarray(Image.open(folder / f"images{part}" / f"{case}_0000.png"))
            assert img.shape == (32, 32, 3)
            assert np.array_equal(img, np.rint(np.moveaxis(s.file["images"][i], 0, -1) * 255))  # 8-bit exact
            lab = np.asarray(Image.open(folder / f"labels{part}" / f"{case}.png"))
            assert np.array_equal(lab, s.file["masks"][i])


def test_export_refuses_and_leaves_nothing_behind(rgb_store: Path, acdc_store: Path, tmp_path: Path) -> None:
    assert run("export", "nnunet", rgb_store, tmp_path, "--dataset-id", "5", "--name", "A").exit_code == 0
    r = run("export", "nnunet", rgb_store, tmp_path, "--dataset-id", "5", "--name", "A")
    assert r.exit_code == 1 and "--overwrite" in r.output
    r = run("export", "nnunet", rgb_store, tmp_path, "--dataset-id", "5", "--name", "B")
    assert r.exit_code == 1 and "Dataset005_A already uses 5" in r.output
    r = run("export", "nnunet", rgb_store, tmp_path, "--dataset-id", "1000", "--name", "C")
    assert r.exit_code == 1 and "1-999" in r.output
    r = run("export", "nnunet", acdc_store, tmp_path, "--dataset-id", "6", "--name", "D", "--format", "png")
    assert r.exit_code == 1 and "8-bit" in r.output
    r = run("export", "nnunet", rgb_store, tmp_path / "missing", "--dataset-id", "7", "--name", "E")
    assert r.exit_code == 1 and "does not exist" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dataset005_A"]
    r = run("export", "nnunet", rgb_store, tmp_path, "--dataset-id", "5", "--name", "A", "--labels", "scribbles",
            "--overwrite")
    assert r.exit_code == 1 and "no training case has any scribbles" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dataset005_A"]  # the previous export is intact
    r = run("export", "nnunet", rgb_store, tmp_path, "--dataset-id", "5", "--name", "A", "--overwrite")
    assert r.exit_code == 0 and check_nnunet_rules(tmp_path / "Dataset005_A")


def test_2d_samples_as_nifti_one_file_per_channel(rgb_store: Path, tmp_path: Path) -> None:
    r = run("export", "nnunet", rgb_store, tmp_path, "--dataset-id", "121", "--name", "PolypsNii",
            "--format", "nifti", "--channel-names", "red,green,blue")
    assert r.exit_code == 0, r.output
    folder = tmp_path / "Dataset121_PolypsNii"
    ds = check_nnunet_rules(folder)
    assert ds["channel_names"] == {"0": "red", "1": "green", "2": "blue"}
    case = sorted(p.name for p in (folder / "labelsTr").iterdir())[0][: -len(".nii.gz")]
    img = nib.load(folder / "imagesTr" / f"{case}_0002.nii.gz")
    assert img.shape == (32, 32, 1) and img.header.get_zooms()[2] == 999.0  # nnU-Net's 2D convention


def test_unknown_mask_pixels_become_ignore_and_empty_cases_are_skipped(tmp_path: Path) -> None:
    from tests.folder_data import small_store

    masks = [np.zeros((8, 8), np.uint8) for _ in range(5)]
    masks[0][2:4, 2:4] = 1
    masks[1][:, :4] = 255  # half unknown
    masks[3][:] = 255  # no mask at all
    store = small_store(tmp_path / "s.h5", classes=["background", "lesion"], masks=masks)
    r = run("export", "nnunet", store, tmp_path, "--dataset-id", "9", "--name", "Toy")
    assert r.exit_code == 0, r.output
    assert "1 case(s) without any masks label skipped" in r.output
    folder = tmp_path / "Dataset009_Toy"
    ds = check_nnunet_rules(folder)
    assert ds["labels"] == {"background": 0, "lesion": 1, "ignore": 2}
    lab = np.asarray(Image.open(folder / "labelsTr" / "p1.png"))
    assert (lab[:, :4] == 2).all() and (lab[:, 4:] == 0).all()
    assert not (folder / "labelsTs" / "p3.png").exists() and (folder / "labelsTs" / "p4.png").exists()
    assert json.loads((folder / "splits_final.json").read_text()) == [{"train": ["p0", "p1"], "val": ["p2"]}]


def _store_with_states(path: Path, classes: list[str], masks: list[np.ndarray], states: list[list[int]],
                       scribbles: list[np.ndarray] | None = None) -> Path:
    from datakit.sample import Sample
    from datakit.store import StoreWriter

    h, w = masks[0].shape
    with StoreWriter(path, classes=classes, image_size=(h, w), normalization="scale:1/255") as wr:
        for i, (m, st) in enumerate(zip(masks, states, strict=True)):
            sc = scribbles[i] if scribbles is not None else np.full((h, w), 255, np.uint8)
            wr.append([Sample(image=np.full((1, h, w), i / 10, np.float32), mask=m, scribble=sc,
                              label_state=np.array(st, np.int8), dataset="toy", patient=f"p{i}",
                              scribble_source="manual" if scribbles is not None else "none")])
        wr.set_patients({"id": [f"p{i}" for i in range(len(masks))]})
        wr.set_splits({"train": [0, 1], "valid": [2], "test": [3]}, method="random", seed=0, ratios=[0.5, 0.25, 0.25])
    return path


def test_label_zero_is_called_background_for_nnunet(tmp_path: Path) -> None:
    masks = [np.zeros((8, 8), np.uint8) for _ in range(4)]
    for m in masks:
        m[2:5, 2:5] = 1
    store = _store_with_states(tmp_path / "s.h5", ["bg", "polyp"], masks, [[1, 1]] * 4)
    r = run("export", "nnunet", store, tmp_path, "--dataset-id", "11", "--name", "Bg")
    assert r.exit_code == 0, r.output
    ds = check_nnunet_rules(tmp_path / "Dataset011_Bg")
    assert ds["labels"] == {"background": 0, "polyp": 1} and ds["datakit"]["classes"] == ["bg", "polyp"]


def test_background_of_a_slice_with_an_unknown_class_is_ignore(tmp_path: Path) -> None:
    """Merged stores: a class the input never annotated may hide in its background."""
    masks = [np.zeros((8, 8), np.uint8) for _ in range(4)]
    masks[0][1:3, 1:3] = 1
    masks[1][1:3, 1:3] = 2
    store = _store_with_states(tmp_path / "s.h5", ["background", "lung", "heart"], masks,
                               [[1, 1, -1], [1, 0, 1], [1, 0, 0], [1, 0, 0]])
    r = run("export", "nnunet", store, tmp_path, "--dataset-id", "12", "--name", "Merged")
    assert r.exit_code == 0, r.output
    assert "1 case(s) with a class of unknown state" in r.output
    folder = tmp_path / "Dataset012_Merged"
    ds = check_nnunet_rules(folder)
    assert ds["labels"]["ignore"] == 3
    lab0 = np.asarray(Image.open(folder / "labelsTr" / "p0.png"))
    assert (lab0[1:3, 1:3] == 1).all() and (lab0[masks[0] == 0] == 3).all()  # background -> ignore
    lab1 = np.asarray(Image.open(folder / "labelsTr" / "p1.png"))
    assert (lab1[masks[1] == 0] == 0).all()  # every class known: background stays background


def test_scribble_export_keeps_dense_masks_for_the_test_split(tmp_path: Path) -> None:
    masks = [np.zeros((8, 8), np.uint8) for _ in range(4)]
    scribbles = [np.full((8, 8), 255, np.uint8) for _ in range(4)]
    for m, sc in zip(masks, scribbles, strict=True):
        m[2:6, 2:6] = 1
        sc[3, 3:5] = 1
        sc[0, 0] = 0
    store = _store_with_states(tmp_path / "s.h5", ["background", "lesion"], masks, [[1, 1]] * 4, scribbles)
    r = run("export", "nnunet", store, tmp_path, "--dataset-id", "13", "--name", "Scr", "--labels", "scribbles")
    assert r.exit_code == 0, r.output
    folder = tmp_path / "Dataset013_Scr"
    tr = np.asarray(Image.open(folder / "labelsTr" / "p0.png"))
    ts = np.asarray(Image.open(folder / "labelsTs" / "p3.png"))
    assert (tr == 2).sum() == 64 - 3  # training: scribbles, the rest ignore
    assert np.array_equal(ts, masks[3])  # test: the dense mask, for evaluation


def test_splits_final_goes_where_nnunet_reads_it(tmp_path: Path) -> None:
    masks = [np.zeros((8, 8), np.uint8) for _ in range(4)]
    for m in masks:
        m[2:5, 2:5] = 1
    store = _store_with_states(tmp_path / "s.h5", ["background", "lesion"], masks, [[1, 1]] * 4)
    (tmp_path / "raw").mkdir()
    r = run("export", "nnunet", store, tmp_path / "raw", "--dataset-id", "14", "--name", "Sp")
    assert r.exit_code == 0, r.output
    assert "nnU-Net reads splits_final.json from $nnUNet_preprocessed/Dataset014_Sp/" in r.output
    pre = tmp_path / "preprocessed"
    r = run("export", "nnunet", store, tmp_path / "raw", "--dataset-id", "14", "--name", "Sp", "--overwrite",
            "--preprocessed", pre)
    assert r.exit_code == 0, r.output
    placed = json.loads((pre / "Dataset014_Sp" / "splits_final.json").read_text())
    assert placed == [{"train": ["p0", "p1"], "val": ["p2"]}]


@pytest.fixture(scope="module")
def maag_store(acdc_phantoms: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The phantoms with MAAG's kind of split (docs/acdc.md: --split file:manifests/acdc_maag_split.json):
    train_scribble, train_masks, valid, test, and one split nnU-Net has no role for."""
    from datakit.sources.acdc import AcdcSource

    tmp = tmp_path_factory.mktemp("maag")
    split = tmp / "maag.json"
    split.write_text(json.dumps({"train_scribble": ["patient001"], "train_masks": ["patient002"],
                                 "valid": ["patient003"], "extra": ["patient004"]}))
    out = tmp / "maag.h5"
    convert(AcdcSource(acdc_phantoms), ConvertOptions(out=out, workers=1, progress=False, split=f"file:{split}"),
            log=lambda m: None)
    return out


def test_maag_split_gives_splits_final_from_its_training_streams(maag_store: Path, tmp_path: Path) -> None:
    """MAAG's training splits (train_scribble + train_masks) are nnU-Net's train, valid its val: one
    patient-level fold, and the output says which store splits made it."""
    r = run("export", "nnunet", maag_store, tmp_path, "--dataset-id", "15", "--name", "Maag")
    assert r.exit_code == 0, r.output
    folder = tmp_path / "Dataset015_Maag"
    check_nnunet_rules(folder)
    cases = json.loads((folder / "datakit_cases.json").read_text())
    (fold,) = json.loads((folder / "splits_final.json").read_text())
    assert {cases[c]["patient"] for c in fold["train"]} == {"patient001", "patient002"}
    assert {cases[c]["patient"] for c in fold["val"]} == {"patient003"}
    assert {c: i["split"] for c, i in cases.items()}["patient001_SAX_ED"] == "train_scribble"  # the store's name
    assert "splits_final.json: train = store split(s) train_masks + train_scribble (4 cases), val = valid (2 cases)" \
        in r.output
    assert "2 training case(s) in no store split or in split(s) nnU-Net has no role for: extra" in r.output
    assert not (folder / "imagesTs").exists()  # no test split: nothing held out


def test_no_splits_final_says_which_split_is_missing(maag_store: Path, tmp_path: Path) -> None:
    import shutil

    import h5py

    store = tmp_path / "no_valid.h5"
    shutil.copy(maag_store, store)
    with h5py.File(store, "r+") as f:
        del f["splits/valid"]
    r = run("export", "nnunet", store, tmp_path, "--dataset-id", "16", "--name", "NoVal")
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "Dataset016_NoVal" / "splits_final.json").exists()
    assert "the store has no validation split (valid) with exported cases: no splits_final.json" in r.output


def test_preprocessed_splits_file_is_replaced_only_with_overwrite(tmp_path: Path) -> None:
    masks = [np.zeros((8, 8), np.uint8) for _ in range(4)]
    for m in masks:
        m[2:5, 2:5] = 1
    store = _store_with_states(tmp_path / "s.h5", ["background", "lesion"], masks, [[1, 1]] * 4)
    (tmp_path / "raw").mkdir()
    placed = tmp_path / "pre" / "Dataset017_Pre" / "splits_final.json"
    placed.parent.mkdir(parents=True)
    placed.write_text("nnU-Net's own folds")
    args = ["export", "nnunet", store, tmp_path / "raw", "--dataset-id", "17", "--name", "Pre", "--preprocessed",
            tmp_path / "pre"]
    r = run(*args)
    assert r.exit_code == 1 and f"error: {placed}: already exists; pass --overwrite" in r.output
    assert placed.read_text() == "nnU-Net's own folds" and list((tmp_path / "raw").iterdir()) == []  # before any work
    r = run(*args, "--overwrite")
    assert r.exit_code == 0, r.output
    assert json.loads(placed.read_text()) == [{"train": ["p0", "p1"], "val": ["p2"]}]
    assert sorted(p.name for p in placed.parent.iterdir()) == ["splits_final.json"]  # no temporary left
