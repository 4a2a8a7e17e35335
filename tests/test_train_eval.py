"""Evaluation a researcher can publish (issue 20): post-processing decided on validation and stored with
the model, plans in checkpoints, paired comparisons, prediction on new scans, default splits, and the
refusal of a store passed as a checkpoint. On the ACDC phantoms (tests/conftest.py's small_store)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from typer.testing import CliRunner  # noqa: E402

from datakit.store import Store  # noqa: E402
from train.cli import app  # noqa: E402

runner = CliRunner()
FAST = ["--width", "8", "--batch-size", "4", "--workers", "0", "--no-progress", "--log-every", "1"]


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def _train(store: Path, out: Path, method: str = "pce", steps: int = 2, *more: object) -> Path:
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # as one_torch_thread does, which session fixtures run before
    try:
        r = invoke("run", "--store", store, "--out", out, "--method", method, "--max-steps", steps, *FAST,
                   "--eval-every", 1, *more)
    finally:
        torch.set_num_threads(n)
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="session")
def pp_run(small_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-step pce run with validation (read-only): its end decided post-processing."""
    return _train(small_store, tmp_path_factory.mktemp("pp") / "run", "pce", 3)


@pytest.fixture(scope="session")
def other_run(small_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, different model (full, 2 steps) on the same store: the other side of a comparison."""
    return _train(small_store, tmp_path_factory.mktemp("other") / "full", "full", 2)


def _oracle(store: Path, *, island: int | None = None, decoy: int | None = None):
    """A 'model' that returns each image's stored mask, plus a 2 x 2 island of class ``island`` in the
    top-left corner of every slice (a stray component: the largest-component step removes it) and a
    20 x 20 block of class ``decoy`` in the bottom-right corner (larger than the class itself: the
    largest-component step keeps it and drops the true structure, so that class's Dice falls)."""
    s = Store(store)
    table = {s.file["images"][i].tobytes(): s.file["masks"][i] for i in range(len(s))}
    k = len(s.classes)

    class Oracle(torch.nn.Module):
        def forward(self, x):
            masks = np.stack([table[img.numpy().tobytes()] for img in x]).copy()
            masks[masks == 255] = 0
            if island is not None:
                masks[:, :2, :2] = island
            if decoy is not None:
                masks[:, -20:, -20:] = decoy
            logits = torch.nn.functional.one_hot(torch.from_numpy(masks).long(), k)
            return type("Out", (), {"logits": logits.permute(0, 3, 1, 2).float()})

    return s, Oracle()


# -- the post-processing operation -------------------------------------------------------------------
def test_largest_component_is_3d_with_full_connectivity_and_2d_for_2d_samples():
    from train.postprocess import keep_largest

    vol = np.zeros((3, 10, 10), np.uint8)
    vol[0, 2:5, 2:5] = 1  # 9 voxels on slice 0 ...
    vol[1, 5, 5] = 1  # ... touching this voxel only by a corner across slices (26-neighbourhood)
    vol[2, 8, 0] = 1  # a stray voxel: removed
    vol[2, 0:3, 7:10] = 2  # class 2 has one component: untouched
    out = keep_largest(vol, (10.0, 1.5, 1.5), [1, 2])
    assert out[1, 5, 5] == 1 and out[0, 3, 3] == 1  # corner-connected across slices: one component, kept
    assert out[2, 8, 0] == 0 and (out == 2).sum() == 9
    assert keep_largest(vol, (10.0, 1.5, 1.5), [2])[2, 8, 0] == 1  # only the classes asked for change
    # slices labelled one by one (2D) would have kept slice 2's stray voxel as its own largest part
    two_d = np.zeros((1, 6, 6), np.uint8)
    two_d[0, 0:3, 0:3], two_d[0, 5, 5] = 3, 3
    out2 = keep_largest(two_d, (1.0, 1.0), [3])  # a 2D sample: (1, H, W) with an in-plane spacing
    assert out2.shape == (1, 6, 6) and out2[0, 5, 5] == 0 and (out2 == 3).sum() == 9


def test_decision_keeps_the_step_only_where_validation_dice_does_not_drop(small_store: Path):
    from train.decisions import decide

    s, oracle = _oracle(small_store, island=1, decoy=3)
    d = decide(oracle, s, s.splits["valid"], torch.device("cpu"), step=7)
    # RV: a stray island removed (Dice rises); MYO: unchanged (does not drop: kept); LV: the decoy block wins
    assert d["classes"] == {"RV": True, "MYO": True, "LV": False}
    raw, lcc = d["valid_dice"]["raw"], d["valid_dice"]["largest_component"]
    assert lcc["RV"] > raw["RV"] and lcc["MYO"] == raw["MYO"] == 1.0 and lcc["LV"] < raw["LV"]
    assert d["split"] == "valid" and d["step"] == 7 and d["operation"] == "largest_component"


def test_evaluate_scores_raw_and_postprocessed_from_one_prediction(small_store: Path):
    from train.inference import evaluate

    s, oracle = _oracle(small_store, island=1)
    res = evaluate(oracle, s, s.splits["valid"], torch.device("cpu"), postprocess=[1])
    assert res["dice"]["RV"] < 1.0 and res["hd95_mm"]["RV"] > 10  # the island, far from the heart
    pp = res["postprocessed"]
    assert pp["dice"] == {"RV": 1.0, "MYO": 1.0, "LV": 1.0, "mean": 1.0} and pp["hd95_mm"]["RV"] == 0.0
    assert len(pp["per_patient"]) == res["volumes"]


# -- train run records the decision and the plan -------------------------------------------------------
def test_train_run_records_postprocessing_and_plan_in_every_checkpoint(pp_run: Path, small_store: Path):
    from train.checkpoint import load, weights_only
    from train.plan import store_plan

    rec = json.loads((pp_run / "postprocessing.json").read_text())
    assert sorted(rec) == ["best.pt", "last.pt"]
    for name, decision in rec.items():
        ck = load(pp_run / "checkpoints" / name)
        assert ck["postprocessing"] == decision and set(decision["classes"]) == {"RV", "MYO", "LV"}
        assert decision["split"] == "valid" and decision["step"] == ck["step"]
        assert ck["plan"] == store_plan(Store(small_store))
        assert ck["plan"]["spacing_mm"] == [3.0, 3.0] and ck["plan"]["size"] == [64, 64]
        slim = weights_only(ck)  # what results/ commits: the decision and plan travel with the weights
        assert slim["postprocessing"] == decision and slim["plan"] == ck["plan"]


def test_run_without_validation_decides_nothing(small_store: Path, tmp_path: Path):
    run = tmp_path / "run"
    r = invoke("run", "--store", small_store, "--out", run, "--method", "pce", "--max-steps", 1, *FAST,
               "--valid-split", "")
    assert r.exit_code == 0, r.output
    assert not (run / "postprocessing.json").exists()
    assert "postprocessing" not in torch.load(run / "checkpoints" / "last.pt", weights_only=True)


# -- eval --postprocess --------------------------------------------------------------------------------
def test_eval_reports_raw_and_postprocessed(pp_run: Path, tmp_path: Path):
    out = tmp_path / "e.json"
    r = invoke("eval", "--run", pp_run, "--split", "valid", "--json", out)
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    decision = json.loads((pp_run / "postprocessing.json").read_text())["best.pt"]
    kept = [c for c, k in decision["classes"].items() if k]
    assert res["postprocessing"]["mode"] == "auto" and res["postprocessing"]["classes"] == kept
    assert res["postprocessing"]["decision"] == decision
    # raw scores stay at the top level (existing consumers), the post-processed ones beside them
    assert {"dice", "dice_std", "hd95_mm", "hd95_mm_std", "per_patient", "volumes"} <= set(res)
    assert set(res["postprocessed"]["dice"]) == {"RV", "MYO", "LV", "mean"}
    assert res["name"] == "run" and res["method"] == "pce" and len(res["store_fingerprint"]) == 16
    assert re.search(r"^dice_pp ", r.stdout, re.M) and re.search(r"^hd95_pp ", r.stdout, re.M)
    assert "recorded in the checkpoint" in r.stdout
    r = invoke("eval", "--run", pp_run, "--split", "valid", "--json", out, "--overwrite", "--postprocess", "none")
    res = json.loads(out.read_text())
    assert "postprocessed" not in res and res["postprocessing"]["classes"] == [] and "dice_pp" not in r.stdout
    r = invoke("eval", "--run", pp_run, "--split", "valid", "--json", out, "--overwrite", "--postprocess", "lcc")
    assert json.loads(out.read_text())["postprocessing"]["classes"] == ["RV", "MYO", "LV"]
    r = invoke("eval", "--run", pp_run, "--postprocess", "largest")
    assert r.exit_code == 1 and "--postprocess must be auto, none, lcc" in r.output


def test_postprocess_command_decides_for_older_checkpoints(pp_run: Path, small_store: Path, tmp_path: Path):
    ck = torch.load(pp_run / "checkpoints" / "best.pt", weights_only=True)
    for key in ("postprocessing", "plan"):  # as written before decisions and plans existed
        del ck[key]
    old = tmp_path / "old.pt"
    torch.save(ck, old)
    r = invoke("eval", "--checkpoint", old, "--store", small_store, "--split", "valid")
    assert r.exit_code == 0, r.output  # still loads, with notes
    assert "records no plan" in r.output and "records no post-processing decision" in r.output
    assert "dice_pp" not in r.output
    r = invoke("postprocess", "--checkpoint", old, "--store", small_store, "--add-plan")
    assert r.exit_code == 0, r.output
    new = torch.load(old, weights_only=True)
    assert new["plan"]["spacing_mm"] == [3.0, 3.0] and set(new["postprocessing"]["classes"]) == {"RV", "MYO", "LV"}
    assert new["postprocessing"]["classes"] == json.loads((pp_run / "postprocessing.json").read_text())["best.pt"][
        "classes"]  # the same model, the same validation: the same decision
    assert "keep" in r.stdout and "largest component" in r.stdout
    r = invoke("postprocess", "--checkpoint", old, "--store", small_store)
    assert r.exit_code == 1 and "--overwrite" in r.output
    r = invoke("postprocess", "--checkpoint", old, "--store", small_store, "--overwrite", "--add-plan")
    assert r.exit_code == 1 and "already records a plan" in r.output
    run = tmp_path / "run"
    shutil.copytree(pp_run, run)
    (run / "postprocessing.json").unlink()
    r = invoke("postprocess", "--run", run, "--overwrite")
    assert r.exit_code == 0, r.output
    assert sorted(json.loads((run / "postprocessing.json").read_text())) == ["best.pt", "last.pt"]


# -- plans ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def other_spacing(small_phantoms: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """small_store's phantoms at the same size (64 px) but 3.5 mm pixels."""
    from datakit.pipeline import ConvertOptions, convert
    from datakit.sources.acdc import AcdcSource

    out = tmp_path_factory.mktemp("s35") / "acdc64_35.h5"
    convert(AcdcSource(small_phantoms, spacing=3.5, size=64), ConvertOptions(out=out, workers=1, progress=False),
            log=lambda m: None)
    return out


def test_eval_and_predict_stop_on_another_plan(pp_run: Path, other_spacing: Path, tmp_path: Path):
    assert Store(other_spacing).image_size == (64, 64)  # the size matches: only the spacing tells
    r = invoke("eval", "--run", pp_run, "--store", other_spacing, "--split", "valid")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "spacing_mm: 3.5 x 3.5 mm here, 3 x 3 mm in the checkpoint" in r.output and "--spacing 3" in r.output
    r = invoke("predict", "--checkpoint", pp_run / "checkpoints" / "best.pt", "--store", other_spacing, "--out",
               tmp_path / "p")
    assert r.exit_code == 1 and "3.5 x 3.5 mm here" in r.output and not (tmp_path / "p").exists()


# -- default split, not a checkpoint -----------------------------------------------------------------
def test_default_split_is_test_when_it_has_samples_else_valid(pp_run: Path, small_store: Path, tmp_path: Path):
    import h5py

    r = invoke("eval", "--run", pp_run)
    assert r.exit_code == 0 and "split: test" in r.output and r.stdout.startswith("test:")
    no_test = tmp_path / "no_test.h5"  # as the MAAG split's store: the test patients are held out
    shutil.copy(small_store, no_test)
    with h5py.File(no_test, "a") as f:
        del f["splits/test"]
        f["splits"].create_dataset("test", data=np.zeros(0, np.int64))
    r = invoke("eval", "--run", pp_run, "--store", no_test, "--json", tmp_path / "e.json")
    assert r.exit_code == 0, r.output
    assert "split: valid (split test holds no samples)" in r.output
    assert json.loads((tmp_path / "e.json").read_text())["split"] == "valid"
    r = invoke("predict", "--checkpoint", pp_run / "checkpoints" / "best.pt", "--store", no_test, "--out",
               tmp_path / "p")
    assert r.exit_code == 0 and "split: valid" in r.output
    assert len(list((tmp_path / "p").glob("*.nii.gz"))) == 2 * len(set(Store(no_test).meta["patient"][
        Store(no_test).splits["valid"]]))


def test_a_store_passed_as_checkpoint_is_named_as_such(small_store: Path):
    r = invoke("eval", "--checkpoint", small_store, "--store", small_store)
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "not a checkpoint: an HDF5 file (a datakit store? pass it with --store)" in r.output
    assert "weights_only" not in r.output


# -- compare -------------------------------------------------------------------------------------------
def _eval(run: Path, out: Path, *more: object) -> Path:
    r = invoke("eval", "--run", run, "--json", out, *(more if "--split" in more else ("--split", "valid", *more)))
    assert r.exit_code == 0, r.output
    return out


def test_compare_pairs_patients_with_bootstrap_and_wilcoxon(pp_run: Path, other_run: Path, tmp_path: Path):
    from scipy.stats import wilcoxon

    # every patient of the store (valid holds one): 8 patients, 16 ED/ES volumes
    a = _eval(pp_run, tmp_path / "a.json", "--postprocess", "none", "--split", "all", "--name", "pce")
    b = _eval(other_run, tmp_path / "b.json", "--postprocess", "none", "--split", "all")
    md, png = tmp_path / "t.md", tmp_path / "box.png"
    r = invoke("compare", a, b, "--md", md, "--png", png)
    assert r.exit_code == 0, r.output
    table = md.read_text()
    assert table == r.stdout and "raw scores on split all" in table and "against pce" in table
    assert "8 patients" in table
    lines = table.splitlines()[2:]
    assert lines[0] == "| run | class | Dice | p (Dice) | HD95 mm | p (HD95) |" and len(lines) == 2 + 2 * 4
    assert lines[2].startswith("| pce | RV | ") and lines[2].endswith(" | ref |")
    # the p-value is scipy's paired test over patients (ED and ES volumes averaged per patient)
    ra, rb = (json.loads(p.read_text()) for p in (a, b))

    def per_patient(res: dict, c: str) -> np.ndarray:
        pids = sorted({row["patient"] for row in res["per_patient"]})
        return np.array([np.mean([row["dice"][c] for row in res["per_patient"] if row["patient"] == p])
                         for p in pids])

    n_patients = len({row["patient"] for row in ra["per_patient"]})
    assert n_patients < ra["volumes"]  # patients, not volumes
    x, y = per_patient(rb, "LV"), per_patient(ra, "LV")
    row = next(line for line in lines if line.startswith("| full | LV |"))
    mean, lo, hi, p = re.match(r"\| full \| LV \| ([\d.]+) \[([\d.]+), ([\d.]+)\] \| ([^|]+) \|", row).groups()
    assert float(mean) == pytest.approx(x.mean(), abs=6e-4) and float(lo) <= float(mean) <= float(hi)
    expected = 1.0 if np.all(x == y) else wilcoxon(x, y).pvalue
    assert p.strip() == ("< 0.001" if expected < 0.001 else f"{expected:.3f}")
    from PIL import Image

    assert Image.open(png).size[0] > 600
    r = invoke("compare", a, b, "--reference", "full")
    assert r.exit_code == 0 and "against full" in r.stdout and "| full | LV |" in r.stdout
    r = invoke("compare", a, b, "--reference", "nobody")
    assert r.exit_code == 1 and "nobody" in r.output and "pce, full" in r.output
    r = invoke("compare", a, b, "--md", md)
    assert r.exit_code == 1 and "--overwrite" in r.output


def test_bootstrap_is_seeded_and_covers_the_mean():
    from train.compare import bootstrap

    v = np.random.default_rng(3).normal(0.8, 0.1, 15)
    m, lo, hi = bootstrap(v, 10000, 0)
    assert m == pytest.approx(v.mean()) and lo < m < hi and (hi - lo) == pytest.approx(2 * 1.96 * v.std() /
                                                                                          np.sqrt(15), rel=0.2)
    assert bootstrap(v, 10000, 0) == (m, lo, hi) and bootstrap(v, 10000, 1) != (m, lo, hi)


def test_compare_refuses_different_stores_or_splits(pp_run: Path, other_spacing: Path, small_store: Path,
                                                    tmp_path: Path):
    import h5py

    a = _eval(pp_run, tmp_path / "a.json")
    other = tmp_path / "same_plan_other_split.h5"  # the same images and plan, another split
    shutil.copy(small_store, other)
    with h5py.File(other, "a") as f:
        valid = f["splits/valid"][()]
        del f["splits/valid"]
        f["splits"].create_dataset("valid", data=valid[: len(valid) // 2])
    b = tmp_path / "b.json"
    r = invoke("eval", "--run", pp_run, "--store", other, "--split", "valid", "--json", b)
    assert r.exit_code == 0, r.output
    r = invoke("compare", a, b)
    assert r.exit_code == 1 and "a.json" in r.output and "b.json" in r.output and "different stores" in r.output
    c = _eval(pp_run, tmp_path / "c.json")
    res = json.loads(c.read_text())
    res["split"] = "test"
    c.write_text(json.dumps(res))
    r = invoke("compare", a, c)
    assert r.exit_code == 1 and "different splits" in r.output and "'test'" in r.output and "'valid'" in r.output
    c.write_text("{not json")
    r = invoke("compare", a, c)
    assert r.exit_code == 1 and "c.json" in r.output and "not valid JSON" in r.output


# -- predict --input -----------------------------------------------------------------------------------
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
    run = _train(store, tmp_path / "run", "full", 2)
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
