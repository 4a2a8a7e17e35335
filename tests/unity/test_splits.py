"""Unity splits: the official labels-train/-tune/-ival files, never cutting a video, and the fallbacks."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from datakit.store import validate_store
from tests.unity.helpers import convert, leftovers, notes_of


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


def _move_labels_to_folder(root: Path) -> None:
    """The layout of real releases: SRC/labels/labels-*.json, png-cache/ at SRC."""
    (root / "labels").mkdir()
    for p in root.glob("labels-*"):
        p.rename(root / "labels" / p.name)


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


def test_split_list_that_is_not_utf8_is_named(unity_copy: Path, tmp_path: Path) -> None:
    for stem in ("labels-train", "labels-tune", "labels-ival"):
        (unity_copy / f"{stem}.json").unlink()
    listed = (unity_copy / "labels-tune.txt").read_text(encoding="utf-8")
    (unity_copy / "labels-tune.txt").write_bytes(listed.encode() + "# r\xe9vis\xe9\n".encode("latin-1"))
    res = convert(unity_copy, tmp_path / "u.h5", "--size", "64")
    assert res.exit_code == 1 and not isinstance(res.exception, UnicodeDecodeError)
    assert "labels-tune.txt" in res.output and "not UTF-8" in res.output
    assert leftovers(tmp_path) == []
