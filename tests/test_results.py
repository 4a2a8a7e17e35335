"""The committed checkpoints in results/ are what their README says: the sha256 it lists, weights
only, and (with the real data beside the repo) the validation Dice it reports, re-measured."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import shared_data

ROOT = Path(__file__).resolve().parents[1]
PROXY = ROOT / "results" / "acdc_cpu_proxy"


def _listed() -> dict[str, str]:
    """file -> sha256, from the README's table."""
    return dict(re.findall(r"\| `(\w+\.pt)` \|[^|]+\| \d+ \| `([0-9a-f]{64})` \|", (PROXY / "README.md").read_text()))


def test_each_checkpoint_is_the_one_the_readme_lists() -> None:
    listed = _listed()
    assert sorted(listed) == ["full.pt", "maag.pt", "pce.pt"]
    for name, digest in listed.items():
        path = PROXY / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, name
        ck = torch.load(path, weights_only=True)
        assert ck["weights_only"] and ck["method"] == name.removesuffix(".pt")
        assert ck["classes"] == ["background", "RV", "MYO", "LV"] and list(ck["image_size"]) == [112, 112]
        assert all(v.dtype in (torch.float16, torch.int64) for v in ck["model"].values())


def test_maag_checkpoint_scores_what_the_readme_says_on_real_acdc(tmp_path: Path, one_torch_thread) -> None:
    """0.805 validation mean Dice (the README's train eval output), from scribbles, re-measured."""
    from datakit.cli import app as datakit_app
    from train.cli import app as train_app

    acdc = shared_data("acdc")
    store = tmp_path / "acdc_112.h5"
    r = CliRunner().invoke(datakit_app, ["convert", "acdc", str(acdc), "--out", str(store), "--split",
                                         f"file:{ROOT / 'manifests' / 'acdc_maag_split.json'}", "--size", "112",
                                         "--spacing", "3.02"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(train_app, ["eval", "--checkpoint", str(PROXY / "maag.pt"), "--store", str(store),
                                       "--split", "valid", "--json", str(tmp_path / "e.json")])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["volumes"] == 30 and res["step"] == 3240
    readme = re.search(r"maag\.pt --store .*?\ndice .*? (0\.\d{3}) \+- [\d.]+\n", (PROXY / "README.md").read_text(),
                       re.S)
    assert readme is not None
    assert res["dice"]["mean"] == pytest.approx(float(readme.group(1)), abs=0.002)
