"""Patient-level splits: never cut a patient, one patient per split at least, methods as documented."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datakit.errors import DatakitError
from datakit.splits import make_splits, parse_ratios

IDS = [f"patient{i:03d}" for i in range(1, 101)]
GROUPS = [["DCM", "HCM", "MINF", "NOR", "RV"][(i - 1) // 20] for i in range(1, 101)]


def test_stratified_spreads_each_group_in_proportion() -> None:
    r = make_splits("stratified", IDS, strata={"group": GROUPS}, default_column="group",
                    ratios=[0.7, 0.15, 0.15], seed=0)
    assert r.method == "stratified:group"
    assert [len(r.patients[k]) for k in ("train", "valid", "test")] == [70, 15, 15]
    group_of = dict(zip(IDS, GROUPS, strict=True))
    for name, expected in (("train", 14), ("valid", 3), ("test", 3)):
        counts = Counter(group_of[p] for p in r.patients[name])
        assert set(counts.values()) == {expected}, (name, counts)


def test_deterministic_per_seed_and_different_across_seeds() -> None:
    a = make_splits("random", IDS, seed=3)
    assert a.patients == make_splits("random", IDS, seed=3).patients
    assert a.patients != make_splits("random", IDS, seed=4).patients


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), ratios=st.lists(st.floats(0.01, 1), min_size=3, max_size=3), seed=st.integers(0, 99))
def test_every_patient_once_and_every_split_non_empty(n: int, ratios: list[float], seed: int) -> None:
    ids = [f"p{i}" for i in range(n)]
    r = make_splits("random", ids, ratios=[x / sum(ratios) for x in ratios], seed=seed)
    assigned = [p for v in r.patients.values() for p in v]
    assert sorted(assigned) == sorted(ids)
    if n >= 3:
        assert all(len(v) >= 1 for v in r.patients.values())


def test_kfold_partitions_patients() -> None:
    folds = [make_splits(f"kfold:5/{k}", IDS, strata={"group": GROUPS}, default_column="group", seed=1)
             for k in range(5)]
    valids = [set(f.patients["valid"]) for f in folds]
    assert all(len(v) == 20 for v in valids)
    assert set().union(*valids) == set(IDS)
    assert sum(len(v) for v in valids) == 100  # disjoint
    assert set(folds[2].patients["train"]) == set(IDS) - valids[2]
    with pytest.raises(DatakitError, match="kfold:K/FOLD"):
        make_splits("kfold:5/5", IDS)


def test_file_split_reports_absent_patients(tmp_path: Path) -> None:
    spec = {"train_scribble": ["patient004", "patient006"], "valid": [1, "patient017"], "test": ["patient200"]}
    p = tmp_path / "split.json"
    p.write_text(json.dumps(spec))
    r = make_splits(f"file:{p}", IDS[:20])
    assert r.patients == {"train_scribble": ["patient004", "patient006"], "valid": ["patient001", "patient017"],
                          "test": []}
    assert any("patient200" in n for n in r.notes)
    assert any("in no split" in n for n in r.notes)
    assert r.method == "file:split.json"


def test_file_split_errors_name_the_file_and_key(tmp_path: Path) -> None:
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(DatakitError, match="bad.json: split file is not valid JSON"):
        make_splits(f"file:{p}", IDS)
    p.write_text(json.dumps({"train": ["patient001"], "valid": ["patient001"]}))
    with pytest.raises(DatakitError, match=r"bad.json#valid: patient patient001 is listed in both"):
        make_splits(f"file:{p}", IDS)
    with pytest.raises(DatakitError, match="split file not found"):
        make_splits(f"file:{tmp_path / 'none.json'}", IDS)


def test_maag_manifest_matches_the_paper() -> None:
    spec = json.loads((Path(__file__).parents[1] / "manifests" / "acdc_maag_split.json").read_text())
    assert {k: len(v) for k, v in spec.items()} == {"train_scribble": 35, "train_masks": 35, "valid": 15,
                                                    "test": 15}
    assert len({p for v in spec.values() for p in v}) == 100


def test_bad_specs_and_ratios() -> None:
    with pytest.raises(DatakitError, match="unknown --split 'bogus'"):
        make_splits("bogus", IDS)
    with pytest.raises(DatakitError, match="cannot stratify on 'weight'"):
        make_splits("stratified:weight", IDS, strata={"group": GROUPS})
    with pytest.raises(DatakitError, match="--ratios"):
        parse_ratios("0.5,x")
    assert parse_ratios("0.7,0.15,0.15") == pytest.approx([0.7, 0.15, 0.15])
    assert parse_ratios("0.8,0.2") == pytest.approx([0.8, 0.2])
    for bad, total in (("0.8,0.3,0.1", "1.2"), ("7,1.5,1.5", "10"), ("0.33,0.33,0.33", "0.99")):
        with pytest.raises(DatakitError, match=rf"--ratios {bad} sums to {total}, not 1"):  # never rescaled
            parse_ratios(bad)
    with pytest.raises(DatakitError, match="non-negative"):
        parse_ratios("nan,0.5,0.5")
