"""The committed checkpoints in results/ are what their README says: the sha256 it lists, weights only
in half precision, their plan and post-processing decision; with the real data beside the repository,
maag's validation scores (raw and post-processed) re-measured, and a real ACDC frame predicted directly
(train predict --input) equal to its prediction through a store."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from tests.helpers import shared_data  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROXY = ROOT / "results" / "acdc_cpu_proxy"
PLAN = {"source": "acdc", "size": [112, 112], "spacing_mm": [3.02, 3.02], "normalization": "percentile_iqr:5-95",
        "classes": ["background", "RV", "MYO", "LV"], "channels": 1, "image_dtype": "float32"}


def _listed() -> dict[str, str]:
    """file -> sha256, from the README's table."""
    return dict(re.findall(r"\| `((?:run\d/)?\w+\.pt)` \|[^|]+\| \d+ \| `([0-9a-f]{64})` \|",
                           (PROXY / "README.md").read_text()))


def _readme_rows(name: str) -> dict[str, list[float]]:
    """The README's train eval output for ``name``.pt: row label -> the four means (RV, MYO, LV, mean)."""
    block = re.search(rf"train eval --checkpoint results/acdc_cpu_proxy/{name}\.pt .*?\n(.*?)\n\$",
                      (PROXY / "README.md").read_text() + "\n$", re.S)
    assert block is not None, name
    rows = {}
    for line in block.group(1).splitlines():
        parts = line.split()
        if parts and parts[0] in ("dice", "hd95_mm", "dice_pp", "hd95_pp"):
            rows[parts[0]] = [float(x) for x in parts[1::3]]
    return rows


def test_each_checkpoint_is_the_one_the_readme_lists() -> None:
    from train.checkpoint import load

    listed = _listed()
    assert {"full.pt", "maag.pt", "pce.pt"} <= set(listed)  # run 3; run4/, run5/: the methods' benchmark
    assert sorted(listed) == sorted(p.relative_to(PROXY).as_posix() for p in PROXY.rglob("*.pt"))  # all, only
    for name, digest in listed.items():
        path = PROXY / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, name
        ck = load(path)  # checked: plan and post-processing records included
        assert ck["weights_only"] and ck["method"] == Path(name).stem
        assert all(v.dtype in (torch.float16, torch.int64) for v in ck["model"].values())
        assert ck["plan"] == PLAN
        pp = ck["postprocessing"]
        assert pp["split"] == "valid" and pp["volumes"] == 30 and pp["step"] == ck["step"]
        kept = [c for c, keep in pp["classes"].items() if keep]
        assert f"| `{name}` | " in (PROXY / "README.md").read_text()
        said = f"largest component of {', '.join(kept)}" if kept else "none"
        assert re.search(rf"`{name}`.*\| {said} \|", (PROXY / "README.md").read_text()), name


@pytest.fixture(scope="module")
def real_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real ACDC data converted as the README says (112 px, 3.02 mm, the MAAG split)."""
    from datakit.cli import app as datakit_app

    acdc = shared_data("acdc")
    store = tmp_path_factory.mktemp("real") / "acdc_112.h5"
    r = CliRunner().invoke(datakit_app, ["convert", "acdc", str(acdc), "--out", str(store), "--split",
                                         f"file:{ROOT / 'manifests' / 'acdc_maag_split.json'}", "--size", "112",
                                         "--spacing", "3.02"])
    assert r.exit_code == 0, r.output
    return store


def test_maag_checkpoint_scores_what_the_readme_says_on_real_acdc(real_store: Path, tmp_path: Path,
                                                                  one_torch_thread) -> None:
    """Validation mean Dice and HD95, raw and post-processed (the README's train eval output), re-measured."""
    from train.cli import app as train_app

    r = CliRunner().invoke(train_app, ["eval", "--checkpoint", str(PROXY / "maag.pt"), "--store", str(real_store),
                                       "--split", "valid", "--json", str(tmp_path / "e.json")])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["volumes"] == 30 and res["step"] == 3240
    readme = _readme_rows("maag")
    for key, scores, tol in (("dice", res, 0.002), ("hd95_mm", res, 0.2), ("dice_pp", res["postprocessed"], 0.002),
                             ("hd95_pp", res["postprocessed"], 0.2)):
        metric = "dice" if key.startswith("dice") else "hd95_mm"
        got = [scores[metric][c] for c in ("RV", "MYO", "LV", "mean")]
        assert got == pytest.approx(readme[key], abs=tol), key


def test_a_real_frame_predicted_directly_equals_its_prediction_through_a_store(real_store: Path, tmp_path: Path,
                                                                             one_torch_thread) -> None:
    import nibabel as nib

    from datakit.store import Store
    from train.cli import app as train_app
    from train.metrics import dice

    s = Store(real_store)
    valid = s.splits["valid"]
    patient = str(s.meta["patient"][valid[0]])
    frame_file = shared_data("acdc") / str(s.meta["source"][valid[0]])  # patientNNN_frameMM.nii.gz (ED)
    assert frame_file.name.startswith(patient) and "_frame" in frame_file.name
    ck = str(PROXY / "maag.pt")
    through, direct = tmp_path / "through", tmp_path / "direct"
    r = CliRunner().invoke(train_app, ["predict", "--checkpoint", ck, "--store", str(real_store), "--split", "valid",
                                       "--out", str(through)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(train_app, ["predict", "--checkpoint", ck, "--input", str(frame_file), "--out", str(direct)])
    assert r.exit_code == 0, r.output
    src = nib.load(frame_file)
    got = nib.load(direct / frame_file.name.replace(".nii.gz", "_pred.nii.gz"))
    want = np.asarray(nib.load(through / f"{patient}_{s.meta['frame'][valid[0]]}_SAX_pred.nii.gz").dataobj)
    a = np.asarray(got.dataobj)
    assert a.shape == src.shape and np.allclose(got.affine, src.affine)
    for c in (1, 2, 3):
        assert dice(a == c, want == c) >= 0.99, c
