"""`convert acdc --scribbles synth:ALGO` and `datakit scribble` through the CLI, exit codes asserted."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from datakit.choices import SCRIBBLE_ALGORITHMS
from datakit.cli import app
from datakit.errors import DatakitError
from datakit.sample import Sample, label_state_from_mask
from datakit.store import Store, StoreWriter, validate_store
from tests.cli_help import unboxed

runner = CliRunner()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture(scope="module")
def two_patients(acdc_phantoms: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of two phantom patient folders (fewer slices: these tests synthesise every one)."""
    root = tmp_path_factory.mktemp("two") / "patients"
    root.mkdir()
    for d in sorted(p for p in acdc_phantoms.rglob("patient*") if p.is_dir())[:2]:
        shutil.copytree(d, root / d.name)
    return root


def _convert(src: Path, out: Path, *args: str) -> Path:
    r = runner.invoke(app, ["convert", "acdc", str(src), "--out", str(out), "--split", "random",
                            "--ratios", "0.5,0.5,0", "--seed", "5", "-j", "1", *args])
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def manual_store(two_patients: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _convert(two_patients, tmp_path_factory.mktemp("manual") / "manual.h5")


@pytest.fixture(scope="module")
def synth_store(two_patients: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _convert(two_patients, tmp_path_factory.mktemp("synth") / "synth.h5",
                    "--scribbles", "synth:wsl4mis", "--scribble-thickness", "3")


def test_convert_with_synthetic_scribbles(synth_store: Path) -> None:
    assert validate_store(synth_store) == []
    with Store(synth_store) as s:
        assert set(s.meta["scribble_source"]) == {"synthetic:wsl4mis"}
        assert json.loads(s.attrs["scribble_synthesis"]) == {"algo": "wsl4mis", "seed": 5, "thickness": 3}
        masks, scribbles = s.file["masks"][()], s.file["scribbles"][()]
    labelled = scribbles != 255
    assert labelled.any() and (scribbles[labelled] == masks[labelled]).all()


def test_scribble_command_matches_convert_synth(manual_store: Path, synth_store: Path, tmp_path: Path) -> None:
    """Re-scribbling the manual store gives exactly what converting with synth: gave."""
    acdc_store = manual_store
    before = _digest(acdc_store)
    out = tmp_path / "re.h5"
    r = runner.invoke(app, ["scribble", str(acdc_store), "--algo", "wsl4mis", "--scribble-thickness", "3",
                            "--seed", "5", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "synthetic scribbles" in r.output
    with Store(acdc_store) as old:
        n, with_mask = len(old), int(sum((m != 255).any(axis=(1, 2)).sum() for _, m in old.iter_chunks("masks")))
    assert n > 0 and f"wrote {out}: {n} samples, {with_mask} with synthetic scribbles, " in r.output
    assert _digest(acdc_store) == before  # the input is only read
    assert validate_store(out) == []
    with Store(out) as new, Store(synth_store) as ref, Store(acdc_store) as old:
        assert np.array_equal(new.file["scribbles"][()], ref.file["scribbles"][()])
        for name in ("images", "masks", "label_state"):
            assert np.array_equal(new.file[name][()], old.file[name][()]), name
        for name, col in old.meta.items():
            if name != "scribble_source":
                assert np.array_equal(new.meta[name], col), name
        assert set(new.meta["scribble_source"]) == {"synthetic:wsl4mis"}
        assert {k: v.tolist() for k, v in new.splits.items()} == {k: v.tolist() for k, v in old.splits.items()}
        assert new.split_attrs["method"] == old.split_attrs["method"]
        assert int(new.split_attrs["seed"]) == int(old.split_attrs["seed"]) == 5
        assert list(new.split_attrs["ratios"]) == list(old.split_attrs["ratios"])
        assert list(new.patients) == list(old.patients)
        assert new.attrs["source_dataset"] == "acdc"
        assert "datakit scribble" in new.attrs["command"]
        assert json.loads(new.attrs["scribble_synthesis"])["algo"] == "wsl4mis"
        assert new.file["images"].compression == old.file["images"].compression


def test_scribble_counts_only_samples_with_a_mask(tmp_path: Path) -> None:
    """Samples whose mask is unknown keep an empty scribble and are not counted as synthesised; a
    split without a seed stays without one."""
    rng = np.random.default_rng(0)
    src = tmp_path / "src.h5"
    samples = []
    for i in range(5):
        mask = np.zeros((40, 40), np.uint8)
        mask[10:30, 8 + i:28 + i] = 1
        if i in (1, 3):
            mask[:] = 255
        samples.append(Sample(image=rng.normal(size=(1, 40, 40)).astype(np.float32), mask=mask,
                              scribble=np.full((40, 40), 255, np.uint8), label_state=label_state_from_mask(mask, 2),
                              dataset="toy", patient=f"p{i}", slice=i, spacing=(1.0, 1.0)))
    with StoreWriter(src, classes=["background", "fg"], image_size=(40, 40)) as w:
        w.append(samples)
        w.set_patients({"id": [f"p{i}" for i in range(5)]})
        w.set_splits({"train": [0, 1, 2], "test": [3, 4]}, method="official", seed=None, ratios=[])
    out = tmp_path / "out.h5"
    r = runner.invoke(app, ["scribble", str(src), "--algo", "skeleton", "--out", str(out), "-j", "1"])
    assert r.exit_code == 0, r.output
    assert f"wrote {out}: 5 samples, 3 with synthetic scribbles, " in r.output
    assert validate_store(out) == []
    with Store(out) as s:
        drawn = (s.file["scribbles"][()] != 255).any(axis=(1, 2))
        assert drawn.tolist() == [True, False, True, False, True]
        assert int(s.split_attrs["seed"]) == -1 and s.split_attrs["method"] == "official"


def test_scribble_into_a_missing_folder(manual_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "no" / "x.h5"
    r = runner.invoke(app, ["scribble", str(manual_store), "--algo", "skeleton", "--out", str(out)])
    assert r.exit_code == 1 and f"error: {tmp_path / 'no'}: output folder does not exist" in r.output
    assert isinstance(r.exception, SystemExit) and "Traceback" not in r.output
    assert list(tmp_path.iterdir()) == []


def test_scribble_refuses_existing_output_then_overwrites(manual_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "new.h5"
    out.write_bytes(b"previous")
    args = ["scribble", str(manual_store), "--algo", "skeleton", "--out", str(out)]
    r = runner.invoke(app, args)
    assert r.exit_code == 1 and "already exists" in r.output and "--overwrite" in r.output
    assert out.read_bytes() == b"previous"
    r = runner.invoke(app, [*args, "--overwrite"])
    assert r.exit_code == 0, r.output
    assert validate_store(out) == [] and _leftovers(tmp_path) == []


@pytest.mark.parametrize(("extra", "message"), [
    (["--algo", "skeleton", "--scribble-coverage", "0.2"], "takes no 'coverage'"),
])
def test_scribble_bad_input_leaves_nothing(manual_store: Path, tmp_path: Path, extra: list[str],
                                          message: str) -> None:
    out = tmp_path / "x.h5"
    r = runner.invoke(app, ["scribble", str(manual_store), "--out", str(out), *extra])
    assert r.exit_code == 1, r.output
    assert message in r.output
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_algorithm_is_a_usage_error_naming_the_known_ones(manual_store: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["scribble", str(manual_store), "--out", str(tmp_path / "x.h5"), "--algo", "skeletn"])
    assert r.exit_code == 2 and "'skeletn' is not one of 'skeleton', 'randomwalk', 'wsl4mis'" in unboxed(r.output)
    assert list(tmp_path.iterdir()) == []


def test_the_listed_algorithms_are_the_registered_ones() -> None:
    from datakit.scribbles import ALGORITHMS, get_algorithm

    get_algorithm("skeleton")  # loads the algorithm modules
    builtin = {name for name, fn in ALGORITHMS.items() if fn.__module__.startswith("datakit.scribbles.")}
    assert sorted(SCRIBBLE_ALGORITHMS) == sorted(builtin)  # (tests may register their own besides)
    with pytest.raises(DatakitError, match="unknown scribble algorithm 'skeletn'; known: randomwalk, skeleton"):
        get_algorithm("skeletn")  # the Python API's answer


def test_scribble_on_a_file_that_is_not_a_store(tmp_path: Path) -> None:
    bad = tmp_path / "plain.h5"
    with h5py.File(bad, "w") as f:
        f["x"] = 1
    r = runner.invoke(app, ["scribble", str(bad), "--algo", "skeleton", "--out", str(tmp_path / "o.h5")])
    assert r.exit_code == 1 and "plain.h5" in r.output and "not a datakit store" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.h5"]


def test_scribble_out_same_as_input_is_refused(manual_store: Path, tmp_path: Path) -> None:
    copy = tmp_path / "s.h5"
    copy.write_bytes(manual_store.read_bytes())
    r = runner.invoke(app, ["scribble", str(copy), "--algo", "skeleton", "--out", str(copy), "--overwrite"])
    assert r.exit_code == 1 and "must differ" in r.output
    assert validate_store(copy) == []


@pytest.mark.parametrize(("args", "message"), [
    (["--scribbles", "synth:nope"], "unknown scribble algorithm 'nope'"),
    (["--scribbles", "synth:skeleton", "--scribble-coverage", "0.1"], "takes no 'coverage'"),
    (["--scribbles", "auto", "--scribble-thickness", "3"], "only applies to --scribbles synth:ALGO"),
])
def test_convert_bad_scribble_options(two_patients: Path, tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "o.h5"
    r = runner.invoke(app, ["convert", "acdc", str(two_patients), "--out", str(out), "-j", "1", *args])
    assert r.exit_code == 1, r.output
    assert message in r.output
    assert list(tmp_path.iterdir()) == []


def test_scribble_options_reach_folder_and_unity_converters(tmp_path: Path) -> None:
    """--scribble-thickness changes the synthetic scribbles of `convert folder` and `splines-to-masks`."""
    from datakit.store import Store
    from datakit.synth.unity import write_unity_phantoms
    from tests.folder_data import write_pairs

    write_pairs(tmp_path / "folder", [f"case{i}" for i in range(4)], size=(96, 96))
    unity = tmp_path / "unity"
    write_unity_phantoms(unity)

    def pixels(cmd: list[str], thickness: str) -> int:
        out = tmp_path / f"{cmd[0]}-{thickness}.h5"
        r = CliRunner().invoke(app, [*cmd, "--out", str(out), "--scribbles", "synth:skeleton",
                                     "--scribble-thickness", thickness, "--workers", "1"])
        assert r.exit_code == 0, r.output
        with Store(out) as s:
            assert set(s.meta["scribble_source"]) == {"synthetic:skeleton"}
            return int(sum((b != 255).sum() for _, b in s.iter_chunks("scribbles")))

    for cmd in (["convert", "folder", str(tmp_path / "folder"), "--binarize", "127", "--classes", "background,fg",
                 "--size", "96"], ["splines-to-masks", "unity", str(unity)]):
        assert pixels(cmd, "5") > 1.5 * pixels(cmd, "1"), cmd


def test_scribble_keeps_a_float16_store_float16(two_patients: Path, tmp_path: Path) -> None:
    """The images are copied in their own storage: a half-precision store stays half precision, unchanged."""
    src = _convert(two_patients, tmp_path / "half.h5", "--image-dtype", "float16", "--image-compression", "gzip")
    out = tmp_path / "re.h5"
    r = runner.invoke(app, ["scribble", str(src), "--algo", "skeleton", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert validate_store(out) == []
    with Store(src) as old, Store(out) as new:
        assert new.file["images"].dtype == np.float16 and new.file["images"].compression == "gzip"
        assert np.array_equal(new.file["images"][()], old.file["images"][()])
