"""train/scans.py: train predict --input on new scans (NIfTI volumes, PNG images) equals predicting them
through a store, and needs a plan that prepares them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from datakit.store import Store  # noqa: E402
from tests.train.helpers import invoke, train_run  # noqa: E402


def test_predict_a_new_nifti_equals_predicting_it_through_a_store(pp_run: Path, small_store: Path,
                                                                 small_phantoms: Path, tmp_path: Path):
    import nibabel as nib

    root = small_phantoms
    ck = pp_run / "checkpoints" / "best.pt"
    through = tmp_path / "through"
    r = invoke("predict", "--checkpoint", ck, "--store", small_store, "--out", through, "--split", "all")
    assert r.exit_code == 0, r.output
    patient = sorted(p for p in (root / "training").iterdir() if p.is_dir())[0]
    direct = tmp_path / "direct"
    r = invoke("predict", "--checkpoint", ck, "--input", patient, "--out", direct)  # a patient folder
    assert r.exit_code == 0, r.output
    assert "left out" in r.output and "post-processing: largest component" in r.output
    frames = sorted(direct.glob("*_pred.nii.gz"))
    assert len(frames) == 2  # the ED and ES frames; the _gt label files left out
    info = dict(line.split(": ") for line in (patient / "Info.cfg").read_text().splitlines() if ": " in line)
    for frame, label in ((int(info["ED"]), "ED"), (int(info["ES"]), "ES")):
        src = nib.load(patient / f"{patient.name}_frame{frame:02d}.nii.gz")
        got = nib.load(direct / f"{patient.name}_frame{frame:02d}_pred.nii.gz")
        want = nib.load(through / f"{patient.name}_{label}_SAX_pred.nii.gz")
        a, b = np.asarray(got.dataobj), np.asarray(want.dataobj)
        assert a.shape == src.shape and a.dtype == np.uint8
        assert np.array_equal(a, b)  # the same bytes go into the network: the same labels
        assert np.allclose(got.affine, src.affine) and got.header.get_zooms() == src.header.get_zooms()
        assert got.header["descrip"] == src.header["descrip"] and got.header.get_xyzt_units() == \
            src.header.get_xyzt_units()
    r = invoke("predict", "--checkpoint", ck, "--input", patient, "--out", direct)
    assert r.exit_code == 1 and "not empty" in r.output
    r = invoke("predict", "--checkpoint", ck, "--input", patient, "--store", small_store, "--out", tmp_path / "x")
    assert r.exit_code == 1 and "exactly one of --store" in r.output
    r = invoke("predict", "--checkpoint", ck, "--input", patient, "--format", "png", "--out", tmp_path / "x")
    assert r.exit_code == 1 and "own format and grid" in r.output and not (tmp_path / "x").exists()


def test_predict_input_needs_a_plan_that_prepares_the_scans(pp_run: Path, small_phantoms: Path, tmp_path: Path):
    from tests.folder_data import write_pairs

    ck = torch.load(pp_run / "checkpoints" / "best.pt", weights_only=True)
    del ck["plan"]
    old = tmp_path / "old.pt"
    torch.save(ck, old)
    nii = sorted(small_phantoms.rglob("*_frame01.nii.gz"))[0]
    r = invoke("predict", "--checkpoint", old, "--input", nii, "--out", tmp_path / "p")
    assert r.exit_code == 1 and "records no plan" in r.output and "--add-plan" in r.output
    write_pairs(tmp_path / "folder", ["a"])
    r = invoke("predict", "--checkpoint", pp_run / "checkpoints" / "best.pt", "--input",
               tmp_path / "folder" / "images" / "a.png", "--out", tmp_path / "p")
    assert r.exit_code == 1 and "'acdc' store" in r.output and "2D images" in r.output
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").iterdir())


def test_predict_a_new_png_with_a_2d_model(tmp_path: Path):
    from PIL import Image

    from datakit.pipeline import ConvertOptions, convert
    from datakit.sources.folder import FolderSource
    from tests.folder_data import write_pairs

    names = [f"img{i}" for i in range(6)]
    write_pairs(tmp_path / "src", names, size=(40, 56))
    store = tmp_path / "folder.h5"
    convert(FolderSource(tmp_path / "src", size=32, binarize=127), ConvertOptions(out=store, workers=1, progress=False),
            log=lambda m: None)
    run = train_run(store, tmp_path / "run", "full", 2)
    ck = run / "checkpoints" / "last.pt"
    through = tmp_path / "through"
    r = invoke("predict", "--checkpoint", ck, "--store", store, "--out", through, "--split", "all",
               "--format", "png", "--postprocess", "none")
    assert r.exit_code == 0, r.output
    direct = tmp_path / "direct"
    r = invoke("predict", "--checkpoint", ck, "--input", tmp_path / "src" / "images", "--out", direct,
               "--postprocess", "none")
    assert r.exit_code == 0, r.output
    s = Store(store)
    from datakit.geometry import letterbox_index

    for i, name in enumerate(s.meta["source"]):
        stem = Path(str(name)).stem
        got = np.asarray(Image.open(direct / f"{stem}_pred.png"))
        assert got.shape == (40, 56)  # the image's own pixels
        stored = np.asarray(Image.open(next(through.glob(f"*_{i:06d}.png"))))
        scale = float(s.meta["letterbox_scale"][i])
        nh, nw = round(40 * scale), round(56 * scale)
        oy, ox = (32 - nh) // 2, (32 - nw) // 2
        back = stored[letterbox_index(40, scale, oy, nh)[:, None], letterbox_index(56, scale, ox, nw)[None, :]]
        assert np.array_equal(got, back)  # the same image bytes, the same labels, put back on the image grid
