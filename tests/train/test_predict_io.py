"""train/predict_io.py: predictions back on the source grid (real ACDC ground truth included), one file
per volume or slice whose names never collide."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("size", [64, 224])  # centre crop, centre pad
def test_prediction_goes_back_to_the_source_grid(size: int):
    from datakit.geometry import SliceGrid
    from train.predict_io import source_index, to_source_grid

    src = np.zeros((150, 170, 3), np.uint8)
    src[40:110, 50:120] = 1
    src[60:90, 70:100] = 2
    src[:, :, 2] = 3 * (src[:, :, 2] > 0)
    spacing, target = (1.3, 1.7), 1.51
    grid = SliceGrid(src.shape[:2], spacing, target, (size, size))
    stored = np.transpose(grid.labels(src, 0), (2, 0, 1))  # (Z, H, W) as the store keeps slices
    back = to_source_grid(stored, src.shape[:2], spacing, (target, target))
    assert back.shape == src.shape
    ri = source_index(150, 1.3, target, size)
    ci = source_index(170, 1.7, target, size)
    inside = (ri >= 0)[:, None] & (ci >= 0)[None, :]
    agree = (back == src)[inside].mean()
    assert agree > 0.97  # nearest there and back: only boundary pixels may move
    assert (back[~inside] == 0).all()
    if size == 224:
        assert inside.all()


def test_source_grid_inversion_matches_real_acdc_ground_truth(tmp_path: Path):
    """Stored masks of two real ACDC patients, put back on the source grid, equal the _gt files."""
    import nibabel as nib

    from datakit.pipeline import ConvertOptions, convert
    from datakit.sources.acdc import AcdcSource
    from datakit.store import Store
    from tests.helpers import shared_data
    from train.metrics import volumes
    from train.predict_io import to_source_grid

    training = shared_data("acdc") / "training"
    pick = tmp_path / "pick"
    pick.mkdir()
    for name in ("patient001", "patient018"):
        (pick / name).symlink_to(training / name)
    out = tmp_path / "two.h5"
    convert(AcdcSource(pick, scribbles="none"), ConvertOptions(out=out, workers=1, progress=False, split="random"),
            log=lambda m: None)
    s = Store(out)
    for v in volumes(s, np.arange(len(s))):
        first = int(v.indices[0])
        stored = np.stack([s.file["masks"][int(i)] for i in v.indices])
        back = to_source_grid(stored, tuple(s.meta["source_shape"][first]), tuple(s.meta["source_spacing"][first]),
                              tuple(s.meta["spacing"][first]))
        gt_file = pick / v.patient / Path(s.meta["source"][first]).name.replace(".nii.gz", "_gt.nii.gz")
        gt = np.asarray(nib.load(gt_file).dataobj)
        assert back.shape == gt.shape
        fg = (gt > 0) | (back > 0)
        assert (back == gt)[fg].mean() > 0.97, (v.patient, v.frame)


def _names_store(path: Path, rows: list[tuple[str, str, int]]) -> Path:
    """A 16 x 16 store, one sample per (dataset, patient, slice) row; every image is filled with its
    row number (mod 4), so a model predicting that value tells the samples' predictions apart."""
    from datakit.sample import Sample, label_state_from_mask
    from datakit.store import StoreWriter

    with StoreWriter(path, classes=["bg", "a", "b", "c"], image_size=(16, 16)) as wr:
        for i, (dataset, patient, sl) in enumerate(rows):
            m = np.full((16, 16), i % 4, np.uint8)
            wr.append([Sample(image=np.full((1, 16, 16), i % 4, np.float32), mask=m,
                              scribble=np.full((16, 16), 255, np.uint8), label_state=label_state_from_mask(m, 4),
                              dataset=dataset, patient=patient, frame="ED", slice=sl, spacing=(1.0, 1.0),
                              slice_spacing=5.0 if sl >= 0 else math.nan)])
        wr.set_patients({"id": sorted({p for _, p, _ in rows})})
        wr.set_splits({"train": list(range(len(rows)))}, method="random", seed=0, ratios=[1.0])
    return path


class _Echo(torch.nn.Module):
    """Predicts each pixel's image value as its class."""

    def forward(self, x):
        logits = torch.nn.functional.one_hot(x[:, 0].round().long(), 4).permute(0, 3, 1, 2).float()
        return type("Out", (), {"logits": logits})


@pytest.mark.parametrize("fmt", ["nifti", "png"])
def test_predictions_sharing_patient_frame_view_get_their_own_files(tmp_path: Path, fmt: str):
    """2D samples of one patient (each a volume of its own) and the volumes of two datasets of a merged
    store with the same patient ids: one file each, none overwriting another, ``written`` = files."""
    import nibabel as nib
    from PIL import Image

    from datakit.store import Store
    from train.predict_io import write_predictions

    rows = [("toy", "p0", -1), ("toy", "p0", -1), ("toy", "p0", -1),  # 2D: three volumes of one sample
            ("a", "p1", 0), ("a", "p1", 1), ("b", "p1", 0), ("b", "p1", 1)]  # 3D: two volumes, one name
    s = Store(_names_store(tmp_path / "s.h5", rows))
    out = tmp_path / "pred"
    n, _ = write_predictions(_Echo(), s, np.arange(len(s)), torch.device("cpu"), out, fmt, "stored")
    got = {f.name: sorted(np.unique(np.asarray(nib.load(f).dataobj if fmt == "nifti" else Image.open(f))).tolist())
           for f in out.iterdir()}
    assert n == len(got)
    if fmt == "png":  # one file per slice; 2D names as before: the sample index
        assert got == {"p0_ED_000000.png": [0], "p0_ED_000001.png": [1], "p0_ED_000002.png": [2],
                       "p1_ED_s00.png": [3], "p1_ED_s01.png": [0], "p1_ED-2_s00.png": [1], "p1_ED-2_s01.png": [2]}
    else:  # one file per volume, holding that volume's predictions
        assert got == {"p0_ED_000000_pred.nii.gz": [0], "p0_ED_000001_pred.nii.gz": [1],
                       "p0_ED_000002_pred.nii.gz": [2], "p1_ED_pred.nii.gz": [0, 3], "p1_ED-2_pred.nii.gz": [1, 2]}
