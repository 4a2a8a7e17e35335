"""Predictions and exports in the source's world frame: meta/source_affine, `train predict` NIfTI on the
source and stored grids, `export nnunet`, and the formats chosen (or refused) where there is no geometry.

ACDC phantoms are rewritten with an oblique affine (flipped, rotated, moved origin) so that a diagonal
affine cannot pass; the real ACDC volumes (../shared/data/acdc, diag(-s, -s, 10)) are checked too.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import h5py
import nibabel as nib
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from datakit.geometry import SliceGrid, stored_affine  # noqa: E402
from datakit.pipeline import ConvertOptions, convert  # noqa: E402
from datakit.sources.acdc import AcdcSource  # noqa: E402
from datakit.store import Store, validate_store  # noqa: E402

REAL_ACDC = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "acdc" / "training"
runner = CliRunner()


def oblique(spacing: tuple[float, ...]) -> np.ndarray:
    """A scanner-like affine: axes flipped and rotated 25 degrees about z, 20 about x, origin moved."""
    a, b = math.radians(25), math.radians(20)
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    out = np.eye(4)
    out[:3, :3] = rx @ rz @ np.diag([-1.0, -1.0, 1.0]) @ np.diag(spacing[:3])
    out[:3, 3] = (112.5, -87.25, 40.0)
    return out


def convert_acdc(root: Path, out: Path, **kw) -> Path:
    convert(AcdcSource(root, **kw), ConvertOptions(out=out, workers=1, progress=False, split="random",
                                                   ratios=(0.5, 0.0, 0.5)), log=lambda m: None)
    assert validate_store(out) == []
    return out


@pytest.fixture(scope="module")
def oblique_acdc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two ACDC phantom patients whose every NIfTI file carries an oblique affine."""
    from datakit.synth.acdc import write_acdc_phantoms

    root = tmp_path_factory.mktemp("oblique") / "ACDC"
    write_acdc_phantoms(root, patients=2, seed=5, cine=False)
    for path in sorted(root.rglob("*.nii.gz")):
        img = nib.load(path)
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj), oblique(img.header.get_zooms()), img.header), path)
    return root


@pytest.fixture(scope="module")
def oblique_store(oblique_acdc: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 48 px at 3 mm: the stored grid differs from the source one, so the origin must move
    return convert_acdc(oblique_acdc, tmp_path_factory.mktemp("ostore") / "acdc.h5", spacing=3.0, size=48)


def world_dice(pred: nib.Nifti1Image, ref: nib.Nifti1Image, label: int) -> float:
    """Dice of one class after putting ``pred`` on ``ref``'s voxels through both affines (nearest)."""
    ref_data = np.asarray(ref.dataobj)
    ijk = np.indices(ref_data.shape).reshape(3, -1)
    world = ref.affine @ np.vstack([ijk, np.ones(ijk.shape[1])])
    idx = np.rint(np.linalg.inv(pred.affine) @ world)[:3].astype(np.int64)
    pred_data = np.asarray(pred.dataobj)
    inside = np.all((idx >= 0) & (idx < np.array(pred_data.shape)[:, None]), axis=0)
    moved = np.zeros(idx.shape[1], pred_data.dtype)
    moved[inside] = pred_data[tuple(idx[:, inside])]
    a, b = moved.reshape(ref_data.shape) == label, ref_data == label
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


def oracle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Predictions = the stored masks: what a perfect model writes, so geometry alone is tested."""
    import train.predict_io
    from train.metrics import volumes

    def fake(model, store, indices, device, progress=None):
        for vol in volumes(store, indices):
            yield vol, np.stack([store.file["masks"][int(i)] for i in vol.indices])

    monkeypatch.setattr(train.predict_io, "iter_predictions", fake)


def gt_of(root: Path, source: str) -> Path:
    return root / source.replace(".nii.gz", "_gt.nii.gz")


def source_of(store: Path, prediction: Path) -> str:
    """meta/source of a prediction file named patient_frame_view_pred.nii.gz."""
    patient, frame = prediction.name.split("_")[:2]
    with Store(store) as s:
        return next(src for p, f, src in zip(s.meta["patient"], s.meta["frame"], s.meta["source"], strict=True)
                    if p == patient and f == frame)


def test_stored_affine_maps_stored_pixels_where_slicegrid_samples() -> None:
    src = oblique((1.4, 1.2, 8.0))
    for shape, size in (((200, 150), (64, 64)), ((30, 20), (64, 64))):  # crop, then pad
        grid = SliceGrid(shape, (1.4, 1.2), (2.0, 1.5), size)
        aff = stored_affine(src, shape, (1.4, 1.2), (2.0, 1.5), size, first_slice=3)
        rows = np.arange(size[0])[grid.rows.dest]
        cols = np.arange(size[1])[grid.cols.dest]
        for r, cr in ((rows[0], grid.rows.coords[0]), (rows[-1], grid.rows.coords[-1])):
            for c, cc in ((cols[0], grid.cols.coords[0]), (cols[-1], grid.cols.coords[-1])):
                np.testing.assert_allclose(aff @ [r, c, 2, 1], src @ [cr, cc, 5, 1], atol=1e-9)
        unit = aff[:3, :3] / np.linalg.norm(aff[:3, :3], axis=0)
        np.testing.assert_allclose(unit, src[:3, :3] / np.linalg.norm(src[:3, :3], axis=0), atol=1e-12)
        np.testing.assert_allclose(np.linalg.norm(aff[:3, :3], axis=0), [2.0, 1.5, 8.0])


def test_source_affine_is_recorded_per_sample(oblique_store: Path, oblique_acdc: Path) -> None:
    with Store(oblique_store) as s:
        assert s.meta["source_affine"].shape == (len(s), 4, 4) and s.meta["source_affine"].dtype == np.float64
        for i in (0, len(s) - 1):
            expected = nib.load(oblique_acdc / s.meta["source"][i]).affine
            np.testing.assert_array_equal(s.meta["source_affine"][i], expected)


def _predict(store: Path, out: Path, grid: str) -> list[Path]:
    from train.predict_io import write_predictions

    with Store(store) as s:
        write_predictions(torch.nn.Identity(), s, np.arange(len(s)), torch.device("cpu"), out, "nifti", grid)
    return sorted(out.glob("*_pred.nii.gz"))


@pytest.mark.parametrize("grid", ["source", "stored"])
def test_nifti_predictions_overlay_the_source_in_world_coordinates(oblique_store: Path, oblique_acdc: Path,
                                                                    tmp_path: Path, grid: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    oracle(monkeypatch)
    files = _predict(oblique_store, tmp_path / grid, grid)
    with Store(oblique_store) as s:
        sources = sorted(set(s.meta["source"]))
    assert len(files) == len(sources) == 4
    for f, source in zip(files, sources, strict=True):
        pred, image, gt = nib.load(f), nib.load(oblique_acdc / source), nib.load(gt_of(oblique_acdc, source))
        assert f.name.split("_")[0] in source
        if grid == "source":
            assert pred.shape == image.shape
            np.testing.assert_allclose(pred.affine, image.affine, atol=1e-5)  # exactly the source image's
        else:
            assert pred.shape[:2] == (48, 48)
            assert not np.allclose(pred.affine[:3, 3], image.affine[:3, 3])  # the crop moved the origin
        assert pred.header.get_sform(coded=True)[1] > 0 and pred.header.get_qform(coded=True)[1] > 0
        for label in (1, 2, 3):  # the prediction lies on the source's structures, in world space
            assert world_dice(pred, gt, label) > 0.85, (f.name, label)


def test_nnunet_export_keeps_the_world_frame(oblique_store: Path, oblique_acdc: Path, tmp_path: Path) -> None:
    from datakit.export.nnunet import export_nnunet

    export_nnunet(oblique_store, tmp_path, 7, "oblique")
    root = tmp_path / "Dataset007_oblique"
    cases = sorted((root / "labelsTr").glob("*.nii.gz")) + sorted((root / "labelsTs").glob("*.nii.gz"))
    assert len(cases) == 4
    with Store(oblique_store) as s:
        by_case = {(p, f): src for p, f, src in zip(s.meta["patient"], s.meta["frame"], s.meta["source"],
                                                    strict=True)}
    for case in cases:
        patient, _, frame = case.name.removesuffix(".nii.gz").split("_")
        lab, gt = nib.load(case), nib.load(gt_of(oblique_acdc, by_case[(patient, frame)]))
        image = nib.load(case.parent.parent / f"images{case.parent.name[-2:]}" /
                         case.name.replace(".nii.gz", "_0000.nii.gz"))
        np.testing.assert_allclose(image.affine, lab.affine)
        assert not np.allclose(lab.affine, np.diag(np.diag(lab.affine)))  # not diag(spacing)
        for label in (1, 2, 3):
            assert world_dice(lab, gt, label) > 0.85, (case.name, label)


@pytest.mark.skipif(not REAL_ACDC.is_dir(), reason="real ACDC data not present at ../shared/data/acdc")
def test_real_acdc_predictions_get_the_source_affine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real ACDC affines are diag(-s, -s, 10): predictions must not come out mirrored (+s)."""
    root = tmp_path / "acdc"
    root.mkdir()
    for pid in ("patient001", "patient050"):
        (root / pid).symlink_to(REAL_ACDC / pid)  # read in place, never copied
    store = convert_acdc(root, tmp_path / "real.h5")  # the default 1.51 mm, 224 px
    with Store(store) as s:
        for i in (0, len(s) - 1):
            np.testing.assert_array_equal(s.meta["source_affine"][i], nib.load(root / s.meta["source"][i]).affine)
    oracle(monkeypatch)
    for grid in ("source", "stored"):
        files = _predict(store, tmp_path / grid, grid)
        assert len(files) == 4
        for f in files:
            source = source_of(store, f)
            pred, gt = nib.load(f), nib.load(gt_of(root, source))
            if grid == "source":
                np.testing.assert_allclose(pred.affine, nib.load(root / source).affine, atol=1e-5)
                assert pred.affine[0, 0] < 0 and pred.affine[1, 1] < 0  # as the source: not mirrored
            for label in (1, 2, 3):
                assert world_dice(pred, gt, label) > 0.9, (f.name, grid, label)


# -- the CLI: default format and refusals ---------------------------------------------------------
@pytest.fixture(scope="module")
def oblique_run(oblique_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from train.cli import app

    run = tmp_path_factory.mktemp("orun") / "run"
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        r = runner.invoke(app, [str(a) for a in ("run", "--store", oblique_store, "--out", run, "--method", "pce",
                                                 "--max-steps", 1, "--width", 8, "--batch-size", 2, "--workers", 0,
                                                 "--no-progress", "--eval-every", 1)])
    finally:
        torch.set_num_threads(n)
    assert r.exit_code == 0, r.output
    return run / "checkpoints" / "last.pt"


def predict(*args: object):
    from train.cli import app

    return runner.invoke(app, ["predict", *(str(a) for a in args)])


def test_predict_default_nifti_has_the_source_affine(oblique_store: Path, oblique_acdc: Path, oblique_run: Path,
                                                     tmp_path: Path) -> None:
    r = predict("--checkpoint", oblique_run, "--store", oblique_store, "--out", tmp_path / "p", "--split", "test")
    assert r.exit_code == 0, r.output
    files = sorted((tmp_path / "p").glob("*_pred.nii.gz"))
    assert len(files) == 2 and "wrote 2 NIfTI files" in r.output
    for f in files:
        source = nib.load(oblique_acdc / source_of(oblique_store, f))
        np.testing.assert_allclose(nib.load(f).affine, source.affine, atol=1e-5)
        assert nib.load(f).shape == source.shape


@pytest.fixture(scope="module")
def merged_store(oblique_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ACDC + a folder dataset (LV only): the merge keeps meta/source_shape but not source_spacing."""
    from datakit.merge import merge_stores
    from datakit.sources.folder import FolderSource
    from tests.folder_data import write_pairs

    tmp = tmp_path_factory.mktemp("merged")
    write_pairs(tmp / "lv", ["a", "b", "c", "d"], size=(40, 48), mask_scale=1)
    folder = tmp / "lv.h5"
    convert(FolderSource(tmp / "lv", classes=["background", "LV"], size=48),
            ConvertOptions(out=folder, workers=1, progress=False), log=lambda m: None)
    out = tmp / "merged.h5"
    merge_stores([oblique_store, folder], out)
    with h5py.File(out) as f:
        assert "source_shape" in f["meta"] and "source_spacing" not in f["meta"]
        assert "source_affine" not in f["meta"]
    return out


def test_predict_defaults_to_png_without_geometry_and_refuses_nifti(merged_store: Path, oblique_run: Path,
                                                                     tmp_path: Path) -> None:
    # the merged store mixes the ACDC model's plan with letterboxed, /255-scaled folder images: refused
    r = predict("--checkpoint", oblique_run, "--store", merged_store, "--out", tmp_path / "png", "--split", "all")
    assert r.exit_code == 1 and "normalization: mixed" in r.output and not (tmp_path / "png").exists()
    ck = torch.load(oblique_run, weights_only=True)
    del ck["plan"]  # a checkpoint written before plans: predicted, with a note
    oblique_run = tmp_path / "no_plan.pt"
    torch.save(ck, oblique_run)
    r = predict("--checkpoint", oblique_run, "--store", merged_store, "--out", tmp_path / "png", "--split", "all")
    assert r.exit_code == 0, r.output  # was KeyError: 'source_spacing'
    assert "records no plan" in r.output
    with Store(merged_store) as s:
        assert len(list((tmp_path / "png").glob("*.png"))) == len(s)
    r = predict("--checkpoint", oblique_run, "--store", merged_store, "--out", tmp_path / "n", "--format", "nifti")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "no meta/source_spacing" in r.output and "use --format png" in r.output
    assert not (tmp_path / "n").exists()
    r = predict("--checkpoint", oblique_run, "--store", merged_store, "--out", tmp_path / "n", "--format", "nifti",
                "--grid", "stored")
    assert r.exit_code == 1 and "no pixel spacing" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "n").exists()


def test_auto_format_is_png_for_2d_sources() -> None:
    from train.predict_io import auto_format

    def store(slices: list[int], keys: tuple[str, ...]) -> SimpleNamespace:
        meta = {"slice": np.array(slices), **{k: np.zeros((len(slices), 2)) for k in keys}}
        return SimpleNamespace(meta=meta)

    both = ("source_shape", "source_spacing")
    assert auto_format(store([0, 1, 2], both), np.arange(3)) == "nifti"  # ACDC
    assert auto_format(store([-1, -1], both), np.arange(2)) == "png"  # CAMUS: 2D images
    assert auto_format(store([-1, -1], ("source_shape",)), np.arange(2)) == "png"  # Unity, folder
    assert auto_format(store([0, 1, -1], ("source_shape",)), np.arange(3)) == "png"  # merged, geometry lost


def test_validate_checks_source_affines(oblique_store: Path, tmp_path: Path) -> None:
    import shutil

    bad = tmp_path / "bad.h5"
    shutil.copyfile(oblique_store, bad)
    with h5py.File(bad, "r+") as f:
        d = f["meta/source_affine"]
        d[3] = np.zeros((4, 4))
        d[5, 0, 0] = np.nan
    found = validate_store(bad)
    assert [str(v.where) for v in found] == ["meta/source_affine[3, 5]"], found
