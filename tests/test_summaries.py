"""Honest summaries: `info` lists skipped patients and conversion notes, says "mixed" for a merged store
whose datasets differ in spacing, orders splits training-first; `stats --json` is strict JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from datakit.cli import app
from datakit.sample import Sample, label_state_from_mask
from datakit.splits import split_order
from datakit.store import StoreWriter

runner = CliRunner()
CLASSES = ["background", "a"]


def _store(path: Path, dataset: str, spacing: tuple[float, float], splits: dict[str, list[int]], n: int = 6,
           **attrs) -> Path:
    rng = np.random.default_rng(0)
    samples = []
    for i in range(n):
        m = (rng.random((8, 8)) > 0.5).astype(np.uint8)
        samples.append(Sample(image=rng.normal(size=(1, 8, 8)).astype(np.float32), mask=m,
                              scribble=np.full((8, 8), 255, np.uint8), label_state=label_state_from_mask(m, 2),
                              dataset=dataset, patient=f"{dataset}{i}", spacing=spacing))
    with StoreWriter(path, classes=CLASSES, image_size=(8, 8), command="test", attrs=attrs) as w:
        w.append(samples)
        w.set_patients({"id": [s.patient for s in samples]})
        w.set_splits(splits, method="random", seed=0, ratios=[])
    return path


def _strict_json(text: str):
    def refuse(constant: str):
        raise ValueError(f"non-strict JSON constant {constant}")
    return json.loads(text, parse_constant=refuse)


def test_info_lists_skipped_patients_and_notes(tmp_path: Path):
    skipped = [{"patient": "patient003", "reason": "Info.cfg: line 2 is not 'Key: Value'"}]
    notes = ["split file x.json: 2 patient(s) of 'test' absent from the data: p1, p2"]
    path = _store(tmp_path / "s.h5", "toy", (1.5, 1.5), {"train": [0, 1, 2, 3], "valid": [4, 5]},
                  skipped=skipped, notes=notes)
    r = runner.invoke(app, ["info", str(path)])
    assert r.exit_code == 0, r.output
    assert "skipped   1\n    patient003: Info.cfg: line 2 is not 'Key: Value'" in r.output
    assert f"notes     1\n    {notes[0]}" in r.output
    d = _strict_json(runner.invoke(app, ["info", str(path), "--json"]).output)
    assert d["skipped"] == skipped and d["notes"] == notes
    clean = _store(tmp_path / "c.h5", "toy", (1.5, 1.5), {"train": [0, 1, 2, 3, 4, 5]})
    out = runner.invoke(app, ["info", str(clean)]).output
    assert "skipped   none" in out and "notes     none" in out


def test_info_of_a_merged_store_with_mixed_spacing_says_mixed(tmp_path: Path):
    split = {"train": [0, 1, 2, 3], "valid": [4], "test": [5]}
    a = _store(tmp_path / "a.h5", "acdc", (1.51, 1.51), split)
    b = _store(tmp_path / "b.h5", "lung", (math.nan, math.nan), split)  # a folder source: unknown
    c = _store(tmp_path / "c.h5", "camus", (0.3, 0.6), split)
    a2 = _store(tmp_path / "a2.h5", "acdc2", (1.51, 1.51), split)
    for inputs, name in (([a, b], "ab.h5"), ([a, c], "ac.h5"), ([a, a2], "aa.h5")):
        r = runner.invoke(app, ["merge", *map(str, inputs), "--out", str(tmp_path / name)])
        assert r.exit_code == 0, r.output
    ab = runner.invoke(app, ["info", str(tmp_path / "ab.h5")]).output
    assert "spacing mixed (acdc 1.51 x 1.51 mm, lung unknown)," in ab, ab
    ac = _strict_json(runner.invoke(app, ["info", str(tmp_path / "ac.h5"), "--json"]).output)
    assert ac["spacing"] == "mixed" and ac["spacing_mm"] is None
    assert ac["spacing_mm_by_dataset"] == {"acdc": [1.51, 1.51], "camus": [0.3, 0.6]}
    same = runner.invoke(app, ["info", str(tmp_path / "aa.h5")]).output
    assert "spacing 1.51 x 1.51 mm," in same
    single = _strict_json(runner.invoke(app, ["info", str(a), "--json"]).output)
    assert single["spacing"] == "uniform" and single["spacing_mm"] == [1.51, 1.51]


def test_splits_are_listed_training_first(tmp_path: Path):
    assert split_order(["valid", "test", "train_scribble", "extra", "train_masks", "train"]) == \
        ["train", "train_masks", "train_scribble", "valid", "test", "extra"]
    path = _store(tmp_path / "s.h5", "toy", (1.0, 1.0),
                  {"valid": [0], "test": [1], "train_scribble": [2, 3], "train_masks": [4, 5]})
    info = _strict_json(runner.invoke(app, ["info", str(path), "--json"]).output)
    assert list(info["splits"]) == ["train_masks", "train_scribble", "valid", "test"]
    text = runner.invoke(app, ["info", str(path)]).output
    assert text.index("train_scribble 2 samples") < text.index("valid 1 samples")
    stats = _strict_json(runner.invoke(app, ["stats", str(path), "--json", "-"]).output)
    assert list(stats["splits"]) == ["all", "train_masks", "train_scribble", "valid", "test"]


def test_stats_json_is_strict_with_an_empty_split(tmp_path: Path):
    path = _store(tmp_path / "s.h5", "toy", (math.nan, math.nan), {"train": [0, 1, 2, 3, 4, 5], "test": []})
    r = runner.invoke(app, ["stats", str(path), "--json", str(tmp_path / "s.json")])
    assert r.exit_code == 0, r.output
    d = _strict_json((tmp_path / "s.json").read_text())  # NaN would raise
    assert d["splits"]["test"]["samples"] == 0
    assert d["splits"]["test"]["intensity"] == {"mean": None, "std": None, "p1": None, "p99": None}
    assert d["splits"]["train"]["intensity"]["mean"] is not None and d["splits"]["train"]["spacing_mm"] is None
    assert "NaN" not in runner.invoke(app, ["stats", str(path), "--json", "-"]).output
