"""train/decisions.py: post-processing kept per class where validation Dice does not drop, decided
at the end of train run (with the plan, in every checkpoint) and by train postprocess for older
checkpoints and runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from datakit.store import Store  # noqa: E402
from tests.train.helpers import FAST, invoke, oracle  # noqa: E402


def test_decision_keeps_the_step_only_where_validation_dice_does_not_drop(small_store: Path):
    from train.decisions import decide

    s, model = oracle(small_store, island=1, decoy=3)
    d = decide(model, s, s.splits["valid"], torch.device("cpu"), step=7)
    # RV: a stray island removed (Dice rises); MYO: unchanged (does not drop: kept); LV: the decoy block wins
    assert d["classes"] == {"RV": True, "MYO": True, "LV": False}
    raw, lcc = d["valid_dice"]["raw"], d["valid_dice"]["largest_component"]
    assert lcc["RV"] > raw["RV"] and lcc["MYO"] == raw["MYO"] == 1.0 and lcc["LV"] < raw["LV"]
    assert d["split"] == "valid" and d["step"] == 7 and d["operation"] == "largest_component"


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
