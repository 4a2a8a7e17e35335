"""train/compare.py: paired comparison of evaluations over patients (bootstrap, Wilcoxon), and the
refusal of evaluations of different stores or splits."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from tests.train.helpers import invoke  # noqa: E402


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


def test_compare_refuses_different_stores_or_splits(pp_run: Path, small_store: Path, tmp_path: Path):
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
