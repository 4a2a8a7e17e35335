"""Bad Unity input: refused or skipped with a clear message, nothing read outside SRC, no store left."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from datakit.errors import DatakitError
from datakit.store import validate_store
from tests.cli_help import unboxed
from tests.unity.helpers import convert, leftovers


@pytest.mark.parametrize("key", [
    "../outside/01-{code}-0000.png",
    "png-cache/../../outside/01-{code}-0000.png",
    "/tmp/01-{code}-0000.png",
])
def test_path_traversal_is_refused_never_read(unity_copy: Path, tmp_path: Path, key: str) -> None:
    code = "ab" * 32
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(outside / f"01-{code}-0000.png")
    labels = json.loads((unity_copy / "labels-all.json").read_text())
    first = next(iter(labels.values()))
    bad_key = key.format(code=code)
    labels[bad_key] = first
    (unity_copy / "labels-all.json").write_text(json.dumps(labels))
    out = tmp_path / "store" / "u.h5"
    out.parent.mkdir()
    res = convert(unity_copy, out, "--size", "64")
    assert res.exit_code == 1
    assert bad_key in res.output and ("outside SRC" in res.output or "absolute" in res.output)
    assert leftovers(out.parent) == []
    res = convert(unity_copy, out, "--size", "64", "--on-error", "skip")
    assert res.exit_code == 0, res.output
    assert f"skipped frame labels-all.json#{bad_key}" in res.output
    with h5py.File(out) as f:
        assert f["images"].shape[0] == 10 and code not in {p.decode() for p in f["meta/patient"][:]}
        assert bad_key in f.attrs["notes"]
    assert validate_store(out) == []


def test_missing_image_and_bad_key_name(unity_copy: Path, tmp_path: Path) -> None:
    labels = json.loads((unity_copy / "labels-all.json").read_text())
    gone = sorted(labels)[0]
    next(unity_copy.glob(f"png-cache/*/*/*/{gone}")).unlink()
    labels["not-a-unity-name.png"] = labels[sorted(labels)[1]]
    no_labels = sorted(labels)[2]
    labels[no_labels] = {"label": {}}  # an entry without its "labels" object
    (unity_copy / "labels-all.json").write_text(json.dumps(labels))
    res = convert(unity_copy, tmp_path / "m.h5")
    assert res.exit_code == 1 and gone in res.output and "image not found" in res.output
    assert leftovers(tmp_path) == []
    res = convert(unity_copy, tmp_path / "m.h5", "--on-error", "skip", "--size", "64")
    assert res.exit_code == 0, res.output
    assert "not a Unity image name" in res.output and gone in res.output
    assert f"{no_labels}: entry has no 'labels' object" in res.output
    with h5py.File(tmp_path / "m.h5") as f:
        assert f["images"].shape[0] == 8  # the videos keep their other frames
    # an unreadable PNG is named too
    tune = next(iter(json.loads((unity_copy / "labels-tune.json").read_text())))
    broken = next(unity_copy.glob(f"png-cache/*/*/*/{tune}"))
    broken.write_bytes(b"not a png")
    res = convert(unity_copy, tmp_path / "b.h5", "--labels", str(unity_copy / "labels-tune.json"))
    assert res.exit_code == 1 and "cannot read PNG" in res.output and tune in res.output
    assert leftovers(tmp_path) == ["m.h5"]


def test_malformed_curve_stops_or_drops_the_label(unity_copy: Path, tmp_path: Path) -> None:
    labels = json.loads((unity_copy / "labels-all.json").read_text())
    name = sorted(labels)[0]
    lv = labels[name]["labels"]["curve-lv-endo"]
    inst = lv[0] if isinstance(lv, list) else lv
    inst["x"] = "10 20 thirty"
    (unity_copy / "labels-all.json").write_text(json.dumps(labels))
    res = convert(unity_copy, tmp_path / "c.h5")
    assert res.exit_code == 1
    assert name in res.output and "curve-lv-endo" in res.output and "non-numeric" in res.output
    assert leftovers(tmp_path) == []
    res = convert(unity_copy, tmp_path / "c.h5", "--on-error", "skip", "--size", "64")
    assert res.exit_code == 0, res.output
    with h5py.File(tmp_path / "c.h5") as f:
        sources = [s.decode() for s in f["meta/source"][:]]
        i = [Path(s).name for s in sources].index(name)  # the frame is kept ...
        assert f["label_state"][i, 1] == -1 and not (f["masks"][i] == 1).any()  # ... its LV unknown
        assert f["label_state"][i, 2] == 1  # the rest of the frame is drawn
        assert f["images"].shape[0] == 10
    assert validate_store(tmp_path / "c.h5") == []


def test_existing_output_and_bad_options(unity_phantoms: Path, unity_store: Path, tmp_path: Path) -> None:
    res = convert(unity_phantoms, unity_store)
    assert res.exit_code == 1 and "--overwrite" in res.output
    res = convert(unity_phantoms, tmp_path / "x.h5", "--scribbles", str(tmp_path))
    assert res.exit_code == 1 and "unity has no scribble files" in res.output
    res = convert(unity_phantoms, tmp_path / "x.h5", "--scribbles", "synth:no-such-algo")
    assert res.exit_code == 1 and "unknown scribble algorithm" in res.output
    bad = tmp_path / "classes.json"
    bad.write_text(json.dumps({"classes": ["background", "LV"], "rules": [{"class": "LV", "mode": "x"}]}))
    res = convert(unity_phantoms, tmp_path / "x.h5", "--classes", str(bad))
    assert res.exit_code == 1 and "classes.json#rules[0].mode" in res.output
    res = convert(unity_phantoms, tmp_path / "x.h5", "--labels", "nope.json")
    assert res.exit_code == 1 and "nope.json" in res.output and "not found" in res.output
    (tmp_path / "broken.json").write_text("{")
    res = convert(unity_phantoms, tmp_path / "x.h5", "--labels", str(tmp_path / "broken.json"))
    assert res.exit_code == 1 and "not valid JSON" in res.output
    assert leftovers(tmp_path) == []


def test_symlinked_folder_leading_outside_src_is_refused(unity_copy: Path, tmp_path: Path) -> None:
    """Key text alone looks safe; the png-cache/02 folder is a link to a folder outside SRC."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.move(str(unity_copy / "png-cache" / "02"), str(elsewhere / "02"))
    (unity_copy / "png-cache" / "02").symlink_to(elsewhere / "02", target_is_directory=True)
    linked = sorted(p.name for p in (elsewhere / "02").rglob("*.png"))
    assert len(linked) == 2
    out = tmp_path / "store" / "l.h5"
    out.parent.mkdir()
    res = convert(unity_copy, out, "--size", "64")
    assert res.exit_code == 1, res.output
    assert "outside SRC" in res.output and any(name in res.output for name in linked)
    assert leftovers(out.parent) == []
    res = convert(unity_copy, out, "--size", "64", "--on-error", "skip")
    assert res.exit_code == 0, res.output
    with h5py.File(out) as f:
        sources = {s.decode() for s in f["meta/source"][:]}
        assert f["images"].shape[0] == 8 and not any(Path(s).name in linked for s in sources)
        assert all(name in f.attrs["notes"] for name in linked)
    # a link that stays inside SRC is fine
    shutil.rmtree(tmp_path / "store")
    (unity_copy / "png-cache" / "02").unlink()
    shutil.move(str(elsewhere / "02"), str(unity_copy / "moved-02"))
    (unity_copy / "png-cache" / "02").symlink_to(unity_copy / "moved-02", target_is_directory=True)
    res = convert(unity_copy, tmp_path / "in.h5", "--size", "64")
    assert res.exit_code == 0, res.output
    with h5py.File(tmp_path / "in.h5") as f:
        assert f["images"].shape[0] == 10


def test_unknown_norm_is_refused_before_any_video_is_read(unity_phantoms: Path, tmp_path: Path) -> None:
    """It used to fail per video (and with --on-error skip, skip them all without saying why)."""
    from datakit.sources.unity import UnitySource

    for extra in ((), ("--on-error", "skip")):
        res = convert(unity_phantoms, tmp_path / "n.h5", "--norm", "bogus", *extra)
        assert res.exit_code == 2 and "'bogus' is not one of" in unboxed(res.output), res.output
        assert "patient" not in res.output and not (tmp_path / "n.h5").exists()
    with pytest.raises(DatakitError, match="unknown --norm 'bogus'; choose one of"):  # the Python API: as early
        UnitySource(unity_phantoms, norm="bogus")
