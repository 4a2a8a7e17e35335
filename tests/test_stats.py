"""`datakit stats`: figures against a direct numpy computation, the JSON schema, the plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from datakit.cli import app
from datakit.sample import Sample, label_state_from_mask
from datakit.stats import store_stats
from datakit.store import Store, StoreWriter, validate_store

runner = CliRunner()
CLASSES = ["background", "RV", "MYO", "LV"]


@pytest.fixture(scope="module")
def mixed_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Nine samples of three patients; some without a mask or without scribbles (all 255)."""
    rng = np.random.default_rng(3)
    out = tmp_path_factory.mktemp("mixed") / "mixed.h5"
    samples = []
    for i in range(9):
        mask = rng.choice([0, 0, 0, 1, 2, 3], size=(32, 32)).astype(np.uint8)
        if i % 4 == 1:
            mask[:] = 255
        scribble = np.where(rng.random((32, 32)) < 0.1, mask, 255).astype(np.uint8)
        if i % 3 == 2:
            scribble[:] = 255
        samples.append(Sample(image=rng.normal(i, 1 + i, (1, 32, 32)).astype(np.float32), mask=mask,
                              scribble=scribble, label_state=label_state_from_mask(mask, 4), dataset="acdc",
                              patient=f"p{i // 3}", frame="ED", slice=i, spacing=(1.5, 1.25),
                              scribble_source="manual"))
    with StoreWriter(out, classes=CLASSES, image_size=(32, 32)) as w:
        w.append(samples)
        w.set_patients({"id": ["p0", "p1", "p2"]})
        w.set_splits({"train": [0, 1, 2, 6, 7, 8], "valid": [3, 4, 5]}, method="random", seed=0, ratios=[0.7, 0.3])
    assert validate_store(out) == []
    return out


def _load(path: Path) -> dict[str, np.ndarray]:
    with Store(path) as s:
        return {"masks": s.file["masks"][()], "scribbles": s.file["scribbles"][()], "images": s.file["images"][()],
                "label_state": s.file["label_state"][()], "patients": s.meta["patient"]}


def _expected(arrays: dict[str, np.ndarray], idx: np.ndarray) -> dict:
    """The same figures straight from numpy on the whole arrays."""
    masks, scr, images = arrays["masks"][idx], arrays["scribbles"][idx], arrays["images"][idx]
    states, patients = arrays["label_state"][idx], arrays["patients"][idx]
    k, px = states.shape[1], masks[0].size
    mk = ~(masks == 255).all(axis=(1, 2))
    sk = ~(scr == 255).all(axis=(1, 2))
    out = {"samples": len(idx), "patients": len(set(patients)), "classes": {}}
    for c in range(k):
        mcov = 100 * (masks[mk] == c).sum(axis=(1, 2)) / px
        scov = 100 * (scr[sk] == c).sum(axis=(1, 2)) / px
        out["classes"][c] = (mcov.mean(), mcov.std(), scov.mean(), scov.std(), int((states[:, c] == 1).sum()))
    out["intensity"] = (images.mean(), images.std(), *np.percentile(images, [1, 99]))
    return out


@pytest.mark.parametrize("fixture", ["mixed_store", "acdc_store"])
def test_figures_match_numpy(fixture: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    import datakit.stats

    monkeypatch.setattr(datakit.stats, "PERCENTILE_PIXELS", 10**9)  # exact percentiles at any size
    path = request.getfixturevalue(fixture)
    d, _ = store_stats(path)
    with Store(path) as s:
        groups = {"all": np.arange(len(s)), **s.splits}
        classes = s.classes
    assert sorted(d["splits"]) == sorted(groups)
    arrays = _load(path)
    for name, idx in groups.items():
        got, want = d["splits"][name], _expected(arrays, idx)
        assert got["samples"] == want["samples"] and got["patients"] == want["patients"]
        for c, cls in enumerate(classes):
            g = got["classes"][cls]
            figures = (g["mask_coverage_pct"]["mean"], g["mask_coverage_pct"]["std"],
                       g["scribble_coverage_pct"]["mean"], g["scribble_coverage_pct"]["std"], g["samples_with_class"])
            np.testing.assert_allclose(figures, want["classes"][c], rtol=1e-9, atol=1e-12, err_msg=f"{name} {cls}")
            scr, states = arrays["scribbles"][idx], arrays["label_state"][idx]
            assert g["samples_with_scribble"] == int((scr == c).any(axis=(1, 2)).sum()), (name, cls)
            assert g["label_state"] == {"present": int((states[:, c] == 1).sum()),
                                        "absent": int((states[:, c] == 0).sum()),
                                        "unknown": int((states[:, c] == -1).sum())}, (name, cls)
        i = got["intensity"]
        np.testing.assert_allclose((i["mean"], i["std"], i["p1"], i["p99"]), want["intensity"], rtol=1e-6)


def test_sampled_percentiles_stay_close(acdc_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above PERCENTILE_PIXELS the 1st/99th percentiles come from an even sample of the pixels."""
    import datakit.stats

    monkeypatch.setattr(datakit.stats, "PERCENTILE_PIXELS", 200_000)
    d, _ = store_stats(acdc_store)
    images = _load(acdc_store)["images"]
    p1, p99 = np.percentile(images, [1, 99])
    got = d["splits"]["all"]["intensity"]
    spread = p99 - p1
    assert abs(got["p1"] - p1) < 0.02 * spread and abs(got["p99"] - p99) < 0.02 * spread
    assert got["mean"] == pytest.approx(images.mean(), rel=1e-6)  # moments stay exact


def test_samples_without_a_mask_are_left_out_of_coverage(mixed_store: Path) -> None:
    d, _ = store_stats(mixed_store)
    a = d["splits"]["all"]
    # masks unknown in samples 1 and 5; scribbles in 2, 5, 8 and in 1 (drawn from its unknown mask)
    assert a["samples_with_mask"] == 7 and a["samples_with_scribble"] == 5
    assert a["classes"]["RV"]["label_state"]["unknown"] == 2
    assert a["classes"]["background"]["mask_coverage_pct"]["mean"] > 40  # not diluted by unknown masks
    assert d["splits"]["train"]["patients"] == 2 and d["splits"]["valid"]["spacing_mm"]["median"] == [1.5, 1.25]


def test_json_schema_and_plots(mixed_store: Path, tmp_path: Path) -> None:
    js, plots = tmp_path / "stats.json", tmp_path / "plots"
    r = runner.invoke(app, ["stats", str(mixed_store), "--json", str(js), "--plots", str(plots)])
    assert r.exit_code == 0, r.output
    assert "RV" in r.output and " %" in r.output and "valid" in r.output
    d = json.loads(js.read_text())
    assert d["classes"] == CLASSES and set(d["splits"]) == {"all", "train", "valid"}
    for split in d["splits"].values():
        assert isinstance(split["samples"], int) and isinstance(split["patients"], int)
        assert list(split["classes"]) == CLASSES
        for c in split["classes"].values():
            for key in ("mask_coverage_pct", "scribble_coverage_pct"):
                assert set(c[key]) == {"mean", "std"} and all(isinstance(v, float) for v in c[key].values())
            assert isinstance(c["samples_with_class"], int)
    names = sorted(p.name for p in plots.iterdir())
    assert names == ["coverage.png", "intensity.png", "splits.png"]
    for p in plots.iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


def test_json_to_stdout_and_one_split(mixed_store: Path) -> None:
    r = runner.invoke(app, ["stats", str(mixed_store), "--json", "-", "--split", "valid"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert list(d["splits"]) == ["valid"] and d["splits"]["valid"]["samples"] == 3
    assert d["splits"]["valid"]["classes"]["LV"]["samples_with_class"] == 2


def test_bad_split_and_bad_file(mixed_store: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["stats", str(mixed_store), "--split", "tset"])
    assert r.exit_code == 1 and "no split 'tset'" in r.output and "mixed.h5" in r.output
    missing = tmp_path / "none.h5"
    r = runner.invoke(app, ["stats", str(missing)])
    assert r.exit_code == 1 and "none.h5" in r.output


@pytest.mark.parametrize(("option", "path", "where", "reason"), [
    ("--json", "nodir/x.json", "nodir", "output folder does not exist"),
    ("--json", "file.txt/x.json", "file.txt", "is not a folder"),
    ("--plots", "file.txt/plots", "file.txt", "is not a folder"),
    ("--plots", "file.txt/a/b", "file.txt", "is not a folder"),
])
def test_unwritable_output_is_refused_before_reading_the_store(mixed_store: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch, option: str,
                                                               path: str, where: str, reason: str) -> None:
    import datakit.stats

    def read(*args: object, **kwargs: object) -> None:
        raise AssertionError("the store was read before the output path was checked")

    monkeypatch.setattr(datakit.stats, "store_stats", read)
    (tmp_path / "file.txt").write_text("keep")
    r = runner.invoke(app, ["stats", str(mixed_store), option, str(tmp_path / path)])
    assert r.exit_code == 1, r.output
    assert f"error: {tmp_path / where}: {reason}" in r.output
    assert isinstance(r.exception, SystemExit) and "Traceback" not in r.output  # the error boundary's message only
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_plots_folder_is_created_with_its_parents_and_json_replaced(mixed_store: Path, tmp_path: Path) -> None:
    js, plots = tmp_path / "stats.json", tmp_path / "a" / "b"
    js.write_text("old")
    args = ["stats", str(mixed_store), "--json", str(js), "--plots", str(plots), "--split", "train"]
    r = runner.invoke(app, args)
    assert r.exit_code == 1 and "already exists; pass --overwrite" in r.output  # as every other writer
    assert js.read_text() == "old" and not plots.exists()
    r = runner.invoke(app, [*args, "--overwrite"])
    assert r.exit_code == 0, r.output
    assert list(json.loads(js.read_text())["splits"]) == ["train"]
    assert sorted(p.name for p in plots.iterdir()) == ["coverage.png", "intensity.png", "splits.png"]


def test_an_empty_split_is_reported_not_a_traceback(mixed_store: Path, tmp_path: Path) -> None:
    """The MAAG-split ACDC store's `test` split is empty (held-out patients): stats says so."""
    import shutil

    import h5py

    store = tmp_path / "empty_split.h5"
    shutil.copy(mixed_store, store)
    with h5py.File(store, "r+") as f:
        f["splits"].create_dataset("test_heldout", data=np.zeros(0, np.int64))
    r = runner.invoke(app, ["stats", str(store), "--json", "-", "--split", "test_heldout"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)["splits"]["test_heldout"]
    assert d["samples"] == 0 and d["classes"]["LV"]["mask_coverage_pct"] == {"mean": None, "std": None}
    assert runner.invoke(app, ["stats", str(store), "--split", "test_heldout"]).exit_code == 0


def test_concurrent_runs_never_share_a_temporary(mixed_store: Path, tmp_path: Path) -> None:
    """--json goes through a temporary unique to the run: another run's, here at the fixed name stats
    once used for every run, is left alone."""
    js = tmp_path / "stats.json"
    other = tmp_path / ".stats.json.tmp"
    other.write_text("another run's half-written JSON")
    r = runner.invoke(app, ["stats", str(mixed_store), "--json", str(js)])
    assert r.exit_code == 0, r.output
    assert json.loads(js.read_text())["classes"] == CLASSES
    assert other.read_text() == "another run's half-written JSON"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".stats.json.tmp", "stats.json"]


def test_a_failed_plot_keeps_the_previous_figures(mixed_store: Path, tmp_path: Path, savefig_full_disk: None) -> None:
    """Figures are written through a temporary too: a full disk mid-figure leaves the previous one whole."""
    plots = tmp_path / "plots"
    plots.mkdir()
    for name in ("coverage.png", "intensity.png", "splits.png"):
        (plots / name).write_bytes(b"previous")
    r = runner.invoke(app, ["stats", str(mixed_store), "--plots", str(plots), "--overwrite"])
    assert r.exit_code == 1 and "no space left on device" in r.output and "Traceback" not in r.output
    assert {p.name: p.read_bytes() for p in plots.iterdir()} == {
        "coverage.png": b"previous", "intensity.png": b"previous", "splits.png": b"previous"}


def test_split_names_on_the_splits_plot_never_run_into_each_other() -> None:
    """MAAG's split names side by side used to print as one word ("train_maskstrain_scribble")."""
    import matplotlib.pyplot as plt

    from datakit.stats_plots import splits_figure
    from tests.plot_checks import overlapping

    names = ("train_scribble", "train_masks", "valid", "test", "a_rather_long_split_name")
    stats = {"splits": {"all": {"samples": 1636, "patients": 85},
                        **{n: {"samples": 600 - 100 * i, "patients": 35 - 5 * i} for i, n in enumerate(names)}}}
    fig = splits_figure(stats)
    try:
        for ax in fig.axes:
            labels = [*ax.get_xticklabels(), *ax.get_yticklabels(), *ax.texts]
            assert not overlapping(labels, fig), [t.get_text() for t in labels]
        shown = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        assert shown == list(names)  # every split named, in the store's order
    finally:
        plt.close(fig)
