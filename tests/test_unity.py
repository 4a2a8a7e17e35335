"""Unity Imaging: phantoms, the source, `datakit splines-to-masks unity` and `datakit synth unity`."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from datakit.cli import app
from datakit.store import validate_store
from datakit.synth.unity import write_unity_phantoms

runner = CliRunner()
HEX = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture(scope="session")
def unity_phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five phantom videos of two frames (3 train, 1 tune, 1 ival), read-only: copy to modify."""
    root = tmp_path_factory.mktemp("unity") / "unity"
    write_unity_phantoms(root, videos=5, frames=2, seed=3, shape=(120, 160))
    return root


@pytest.fixture
def unity_copy(unity_phantoms: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "unity"
    shutil.copytree(unity_phantoms, dst)
    return dst


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


def convert(src: Path, out: Path, *extra: str):
    return runner.invoke(app, ["splines-to-masks", "unity", str(src), "--out", str(out), "-j", "1", *extra])


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix in (".h5", ".tmp") or p.name.endswith(".tmp"))


@pytest.fixture(scope="session")
def unity_store(unity_phantoms: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ustore") / "unity.h5"
    before = tree_digest(unity_phantoms)
    res = convert(unity_phantoms, out, "--size", "96")
    assert res.exit_code == 0, res.output
    assert tree_digest(unity_phantoms) == before  # sources are only read
    return out


def test_synth_writes_the_unity_layout(unity_phantoms: Path) -> None:
    pngs = sorted(unity_phantoms.glob("png-cache/*/*/*/*.png"))
    assert len(pngs) == 10
    for p in pngs:
        cls, code, frame = p.name[:-4].split("-")
        assert p.parent.parts[-3:] == (cls, code[:2], code[2:4]) and HEX.match(code) and len(frame) == 4
    assert {p.parts[-4] for p in pngs} == {"01", "02"}
    modes = {Image.open(p).mode for p in pngs}
    assert modes == {"L", "RGB"}
    labels = json.loads((unity_phantoms / "labels-all.json").read_text())
    assert set(labels) == {p.name for p in pngs}
    variants = {type(e["labels"]["curve-lv-endo"]).__name__ for e in labels.values()}
    assert variants == {"dict", "list"}  # both JSON variants
    types = [inst["type"] for e in labels.values() for v in e["labels"].values()
             for inst in (v if isinstance(v, list) else [v])]
    assert {"curve", "point", "off", "blurred"} <= set(types)
    for stem in ("labels-train", "labels-tune", "labels-ival"):
        part = json.loads((unity_phantoms / f"{stem}.json").read_text())
        assert (unity_phantoms / f"{stem}.txt").read_text().split() == list(part)
    assert len(json.loads((unity_phantoms / "labels-ival.json").read_text())) == 2


def test_synth_cli_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    res = runner.invoke(app, ["synth", "unity", str(tmp_path / "u"), "--videos", "1", "--frames", "1"])
    assert res.exit_code == 0, res.output
    assert "wrote 1 frames of 1 Unity phantom videos" in res.output
    res = runner.invoke(app, ["synth", "unity", str(tmp_path / "u"), "--videos", "1"])
    assert res.exit_code == 1 and "--overwrite" in res.output


def test_store_is_valid_with_masks_states_keypoints(unity_store: Path, unity_phantoms: Path) -> None:
    assert validate_store(unity_store) == []
    with h5py.File(unity_store) as f:
        assert json.loads(f.attrs["classes"]) == ["background", "LV", "MYO", "LA", "RV", "RA"]
        assert f["images"].shape == (10, 1, 96, 96) and f["images"].attrs["normalization"] == "scale:1/255"
        masks, states = f["masks"][:], f["label_state"][:]
        assert set(np.unique(masks)) == {0, 1, 2, 3, 4, 5}
        assert (states == 0).any() and (states == -1).any()  # off RA, blurred RV
        for m, s in zip(masks, states, strict=True):  # a state of 1 exactly when the class has pixels
            present = np.bincount(m.ravel(), minlength=6) > 0
            assert ((s == 1) == present).all()
        kp = f["keypoints"]
        assert json.loads(kp.attrs["names"])[0] == "mv-ant-hinge"
        assert (kp[:, :, 2] == 1).any() and (kp[:, :, 2] == -1).any()
        assert np.isnan(f["meta/spacing"][:]).all()
        patients = [p.decode() for p in f["meta/patient"][:]]
        assert all(HEX.match(p) for p in patients) and len(set(patients)) == 5
        assert {d.decode() for d in f["meta/dataset"][:]} == {"unity"}
        src = f["meta/source"][0].decode()
        assert src.startswith("png-cache/") and (unity_phantoms / src).is_file()
        assert f["meta/source_shape"][0].tolist() == [120, 160]
        # letterbox: 120 x 160 -> 72 x 96, padded 12 rows above and below
        assert (masks[:, :12] == 0).all() and (masks[:, -12:] == 0).all()


def test_splits_follow_unity_files_and_never_cut_a_video(unity_store: Path, unity_phantoms: Path) -> None:
    def videos(stem: str) -> set[str]:
        return {k.split("-")[1] for k in json.loads((unity_phantoms / f"{stem}.json").read_text())}

    with h5py.File(unity_store) as f:
        patients = np.array([p.decode() for p in f["meta/patient"][:]])
        assert f["splits"].attrs["method"].startswith("official:labels-train.json")
        got = {name: set(patients[f["splits"][name][:]]) for name in ("train", "valid", "test")}
    assert got == {"train": videos("labels-train"), "valid": videos("labels-tune"), "test": videos("labels-ival")}
    for video in set(patients):
        assert sum(video in s for s in got.values()) == 1


def test_video_split_across_files_goes_to_one_split(unity_copy: Path, tmp_path: Path) -> None:
    train = json.loads((unity_copy / "labels-train.json").read_text())
    moved = sorted(train)[0]  # one frame of a training video now also listed for testing
    ival = json.loads((unity_copy / "labels-ival.json").read_text())
    ival[moved] = train[moved]
    (unity_copy / "labels-ival.json").write_text(json.dumps(ival))
    res = convert(unity_copy, tmp_path / "s.h5", "--size", "64")
    assert res.exit_code == 0, res.output
    assert "never cut" in res.output
    with h5py.File(tmp_path / "s.h5") as f:
        patients = np.array([p.decode() for p in f["meta/patient"][:]])
        video = moved.split("-")[1]
        assert video in set(patients[f["splits/train"][:]])  # 2 frames listed in train, 1 in ival
        assert video not in set(patients[f["splits/test"][:]])
    assert validate_store(tmp_path / "s.h5") == []


def test_random_split_without_split_files_and_labels_option(unity_copy: Path, tmp_path: Path) -> None:
    res = convert(unity_copy, tmp_path / "t.h5", "--labels", "labels-train.json", "--size", "64")
    assert res.exit_code == 0, res.output
    with h5py.File(tmp_path / "t.h5") as f:
        assert f["images"].shape[0] == 6 and len(set(f["meta/patient"][:])) == 3
        assert len(f["splits/test"]) == 0 and len(f["splits/train"]) == 6
    for stem in ("labels-train", "labels-tune", "labels-ival"):
        (unity_copy / f"{stem}.json").unlink()
    res = convert(unity_copy, tmp_path / "txt.h5", "--size", "64")  # the .txt lists suffice
    assert res.exit_code == 0, res.output
    with h5py.File(tmp_path / "txt.h5") as f:
        assert f["splits"].attrs["method"] == "official:labels-train.txt,labels-tune.txt,labels-ival.txt"
        assert [len(f["splits"][n]) for n in ("train", "valid", "test")] == [6, 2, 2]
    for stem in ("labels-train", "labels-tune", "labels-ival"):
        (unity_copy / f"{stem}.txt").unlink()
    res = convert(unity_copy, tmp_path / "r.h5", "--size", "64")
    assert res.exit_code == 0, res.output
    with h5py.File(tmp_path / "r.h5") as f:
        assert f["splits"].attrs["method"] == "random"
    res = convert(unity_copy, tmp_path / "o.h5", "--split", "official")
    assert res.exit_code == 1 and "labels-train" in res.output and not (tmp_path / "o.h5").exists()


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


def notes_of(f: h5py.File) -> list[str]:
    raw = f.attrs["notes"]
    return json.loads(raw) if isinstance(raw, str) else list(raw)  # an empty list is stored as an array


def _instance(entry: dict, label: str) -> dict:
    value = entry["labels"][label]
    return value[0] if isinstance(value, list) else value


def test_degenerate_labels_keep_the_frame_and_are_summarised(unity_copy: Path, tmp_path: Path) -> None:
    """2-point and NaN curves as real exports hold them: the default (stop) conversion goes through."""
    manifest = tmp_path / "walls.json"
    manifest.write_text(json.dumps({
        "classes": ["background", "LV", "WALL", "RV"],
        "rules": [{"class": "WALL", "mode": "line", "curves": ["curve-lv-antsep-rv"], "thickness": 1},
                  {"class": "LV", "mode": "fill", "curves": ["curve-lv-endo"]},
                  {"class": "RV", "mode": "fill", "curves": ["curve-rv-endo"]}],
        "points": ["mv-ant-hinge"]}))
    labels = json.loads((unity_copy / "labels-all.json").read_text())
    names = sorted(labels)
    two, nan, both = names[0], names[3], names[5]
    _instance(labels[two], "curve-lv-antsep-rv").update(x="10 60", y="20 20")  # a line: drawn as a segment
    _instance(labels[nan], "curve-lv-endo").update(x="10 NaN 30 40", y="5 6 7 8")  # unbuildable: LV -1
    _instance(labels[both], "curve-rv-endo").update(x="10 20", y="30 40")  # a 2-point fill: RV -1
    _instance(labels[both], "mv-ant-hinge").update(x="nan", y="3")  # keypoint unknown
    _instance(labels[names[1]], "curve-lv-endo")["straight_segment"] = "1 0"  # unreadable: ignored, said
    (unity_copy / "labels-all.json").write_text(json.dumps(labels))
    res = convert(unity_copy, tmp_path / "d.h5", "--classes", str(manifest), "--size", "64")
    assert res.exit_code == 0, res.output
    assert "degenerate labels: 4 in 3 frame(s) (1 2-point line curve(s) drawn as straight segments, " \
           "3 left out as unknown, label state -1)" in res.output
    with h5py.File(tmp_path / "d.h5") as f:
        notes = notes_of(f)
        frame = {Path(s.decode()).name: i for i, s in enumerate(f["meta/source"][:])}
        assert f["images"].shape[0] == 10  # every frame kept
        assert f["label_state"][frame[two], 2] == 1 and (f["masks"][frame[two]] == 2).any()
        assert f["label_state"][frame[nan], 1] == -1 and not (f["masks"][frame[nan]] == 1).any()
        assert f["label_state"][frame[nan], 3] == 1
        assert f["label_state"][frame[both], 3] == -1 and f["keypoints"][frame[both], 0, 2] == -1
    assert f"degenerate label labels-all.json#{two}: label 'curve-lv-antsep-rv': curve has 2 distinct points; " \
           f"drawn as a straight segment" in notes
    assert any(n.startswith(f"degenerate label labels-all.json#{nan}: label 'curve-lv-endo': x holds a "
                            f"non-finite coordinate") for n in notes)
    assert any(n.startswith(f"degenerate label labels-all.json#{both}: label 'curve-rv-endo': curve has 2 "
                            f"distinct point(s)") for n in notes)
    assert any(n.startswith(f"degenerate label labels-all.json#{both}: label 'mv-ant-hinge'") for n in notes)
    assert any(n.startswith("degenerate labels: 4 in 3 frame(s)") for n in notes)
    assert f"labels-all.json#{names[1]}: label 'curve-lv-endo': straight_segment ignored (it has 2 value(s) " \
           f"for 11 control points)" in notes
    assert validate_store(tmp_path / "d.h5") == []


def test_off_as_unknown_option(unity_phantoms: Path, tmp_path: Path) -> None:
    """Videos 1 and 4 have their RA 'off': absent (0) by default, unknown (-1) with --off-as unknown."""
    states = {}
    for reading in ("absent", "unknown"):
        res = convert(unity_phantoms, tmp_path / f"{reading}.h5", "--size", "48", "--off-as", reading)
        assert res.exit_code == 0, res.output
        with h5py.File(tmp_path / f"{reading}.h5") as f:
            states[reading] = f["label_state"][:]
            assert f"--off-as {reading}" in f.attrs["command"]
        assert validate_store(tmp_path / f"{reading}.h5") == []
    ra = json.loads(h5py.File(tmp_path / "absent.h5").attrs["classes"]).index("RA")
    assert (states["absent"][:, ra] == 0).sum() == 4 and (states["unknown"][:, ra] == 0).sum() == 0
    changed = states["absent"] != states["unknown"]
    assert changed.any() and (states["absent"][changed] == 0).all() and (states["unknown"][changed] == -1).all()
    res = convert(unity_phantoms, tmp_path / "x.h5", "--off-as", "maybe")
    assert res.exit_code == 1 and "--off-as must be absent or unknown" in res.output


def _move_labels_to_folder(root: Path) -> None:
    """The layout of real releases: SRC/labels/labels-*.json, png-cache/ at SRC."""
    (root / "labels").mkdir()
    for p in root.glob("labels-*"):
        p.rename(root / "labels" / p.name)


def test_labels_in_their_own_folder_keep_the_official_split(unity_copy: Path, tmp_path: Path) -> None:
    _move_labels_to_folder(unity_copy)
    for extra in ([], ["--labels", "labels/labels-all.json"]):
        out = tmp_path / f"l{len(extra)}.h5"
        res = convert(unity_copy, out, "--size", "48", *extra)
        assert res.exit_code == 0, res.output
        with h5py.File(out) as f:
            assert f["splits"].attrs["method"] == "official:labels-train.json,labels-tune.json,labels-ival.json"
            assert [len(f["splits"][n]) for n in ("train", "valid", "test")] == [6, 2, 2]
            assert not any(n.startswith("split:") for n in notes_of(f))
    # the 2020 code's labels-val stands for labels-tune
    for ext in (".json", ".txt"):
        (unity_copy / "labels" / f"labels-tune{ext}").rename(unity_copy / "labels" / f"labels-val{ext}")
    res = convert(unity_copy, tmp_path / "val.h5", "--size", "48")
    assert res.exit_code == 0, res.output
    with h5py.File(tmp_path / "val.h5") as f:
        assert f["splits"].attrs["method"] == "official:labels-train.json,labels-val.json,labels-ival.json"


def test_why_no_official_split_is_said_in_output_and_notes(unity_copy: Path, tmp_path: Path) -> None:
    _move_labels_to_folder(unity_copy)
    res = convert(unity_copy, tmp_path / "r.h5", "--size", "48", "--split", "random")
    assert res.exit_code == 0, res.output
    assert "split: random as asked, not Unity's official one (labels-train.json, labels-tune.json, " \
           "labels-ival.json in" in res.output
    for p in (unity_copy / "labels").glob("labels-[tiv]*"):
        p.unlink()
    res = convert(unity_copy, tmp_path / "n.h5", "--size", "48")
    assert res.exit_code == 0, res.output
    why = "split: random, not Unity's official one: no labels-train/-tune/-ival (.json or .txt) beside the " \
          "labels file or in SRC"
    assert why in res.output
    with h5py.File(tmp_path / "n.h5") as f:
        assert f["splits"].attrs["method"] == "random"
        assert any(n.startswith(why) for n in notes_of(f))


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


def test_custom_classes_with_a_line_rule(unity_phantoms: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "lv_only.json"
    manifest.write_text(json.dumps({
        "classes": ["background", "LV", "WALL"],
        "rules": [{"class": "WALL", "mode": "line", "curves": ["curve-lv-antsep-rv", "curve-lv-post-epi"],
                   "thickness": 2},
                  {"class": "LV", "mode": "fill", "curves": ["curve-lv-endo"]}],
        "points": ["lv-apex-endo"]}))
    res = convert(unity_phantoms, tmp_path / "lv.h5", "--classes", str(manifest), "--size", "64",
                  "--labels", "labels-ival.json")
    assert res.exit_code == 0, res.output
    assert "labels not in the class manifest, ignored" in res.output
    with h5py.File(tmp_path / "lv.h5") as f:
        assert json.loads(f.attrs["classes"]) == ["background", "LV", "WALL"]
        assert set(np.unique(f["masks"][:])) == {0, 1, 2}
        assert f["keypoints"].shape == (2, 1, 3)
    assert validate_store(tmp_path / "lv.h5") == []


def test_help_lists_the_commands() -> None:
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0 and "splines-to-masks" in res.output
    res = runner.invoke(app, ["synth", "--help"])
    assert res.exit_code == 0 and "unity" in res.output


def test_masks_and_keypoints_line_up_with_the_stored_image(unity_store: Path) -> None:
    with h5py.File(unity_store) as f:
        images, masks, kp = f["images"][:, 0], f["masks"][:], f["keypoints"][:]
        names = json.loads(f["keypoints"].attrs["names"])
    apex = names.index("lv-apex-endo")
    for img, m, k in zip(images, masks, kp, strict=True):
        # the phantom's blood pool is dark and its myocardium bright, in the stored image too
        assert img[m == 1].mean() < 0.5 * img[m == 2].mean()
        # the endocardial apex point lies on the LV contour
        x, y, vis = k[apex]
        assert vis == 1
        rows, cols = np.nonzero(m == 1)
        assert np.hypot(cols - x, rows - y).min() < 1.5
        assert y < rows.mean()  # apex up


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


def test_relative_labels_name_is_looked_up_in_src_first(unity_copy: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    shutil.copy(unity_copy / "labels-tune.json", cwd / "labels-train.json")  # same name, other frames
    shutil.copy(unity_copy / "labels-tune.json", cwd / "only-here.json")
    monkeypatch.chdir(cwd)
    res = convert(unity_copy, tmp_path / "a.h5", "--labels", "labels-train.json", "--size", "64")
    assert res.exit_code == 0, res.output
    with h5py.File(tmp_path / "a.h5") as f:
        assert f["images"].shape[0] == 6  # SRC's labels-train.json (3 videos), not the 1-video file here
    res = convert(unity_copy, tmp_path / "b.h5", "--labels", "only-here.json", "--size", "64")
    assert res.exit_code == 0, res.output  # not in SRC: the current folder still counts
    with h5py.File(tmp_path / "b.h5") as f:
        assert f["images"].shape[0] == 2


def test_split_list_that_is_not_utf8_is_named(unity_copy: Path, tmp_path: Path) -> None:
    for stem in ("labels-train", "labels-tune", "labels-ival"):
        (unity_copy / f"{stem}.json").unlink()
    listed = (unity_copy / "labels-tune.txt").read_text(encoding="utf-8")
    (unity_copy / "labels-tune.txt").write_bytes(listed.encode() + "# r\xe9vis\xe9\n".encode("latin-1"))
    res = convert(unity_copy, tmp_path / "u.h5", "--size", "64")
    assert res.exit_code == 1 and not isinstance(res.exception, UnicodeDecodeError)
    assert "labels-tune.txt" in res.output and "not UTF-8" in res.output
    assert leftovers(tmp_path) == []


def test_unknown_norm_is_refused_before_any_video_is_read(unity_phantoms: Path, tmp_path: Path) -> None:
    """It used to fail per video (and with --on-error skip, skip them all without saying why)."""
    for extra in ((), ("--on-error", "skip")):
        res = convert(unity_phantoms, tmp_path / "n.h5", "--norm", "bogus", *extra)
        assert res.exit_code == 1 and "unknown --norm 'bogus'; choose one of" in res.output, res.output
        assert "patient" not in res.output and not (tmp_path / "n.h5").exists()
