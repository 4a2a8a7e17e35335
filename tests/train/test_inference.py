"""train/inference.py: evaluate scores a model that returns the stored masks as perfect, raw and
post-processed from one prediction."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from tests.train.helpers import oracle  # noqa: E402


def test_eval_scores_known_masks(small_store: Path):
    from train.inference import evaluate

    s, model = oracle(small_store)
    res = evaluate(model, s, s.splits["valid"], torch.device("cpu"))
    patients = set(s.meta["patient"][s.splits["valid"]])
    assert res["volumes"] == 2 * len(patients)  # ED and ES volumes, slices reassembled
    assert res["dice"] == {"RV": 1.0, "MYO": 1.0, "LV": 1.0, "mean": 1.0}
    assert res["hd95_mm"]["mean"] == 0.0 and res["dice_std"]["mean"] == 0.0
    row = res["per_patient"][0]
    idx = s.splits["valid"][(s.meta["patient"][s.splits["valid"]] == row["patient"])
                            & (s.meta["frame"][s.splits["valid"]] == row["frame"])]
    assert row["slices"] == len(idx)


def test_evaluate_scores_raw_and_postprocessed_from_one_prediction(small_store: Path):
    from train.inference import evaluate

    s, model = oracle(small_store, island=1)
    res = evaluate(model, s, s.splits["valid"], torch.device("cpu"), postprocess=[1])
    assert res["dice"]["RV"] < 1.0 and res["hd95_mm"]["RV"] > 10  # the island, far from the heart
    pp = res["postprocessed"]
    assert pp["dice"] == {"RV": 1.0, "MYO": 1.0, "LV": 1.0, "mean": 1.0} and pp["hd95_mm"]["RV"] == 0.0
    assert len(pp["per_patient"]) == res["volumes"]
