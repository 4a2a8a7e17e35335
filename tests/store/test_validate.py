"""validate_store: every clause of the contract, broken on purpose, reported with its place."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from datakit.store import validate_store


def _broken(store, edit) -> list[str]:
    path, _ = store
    with h5py.File(path, "r+") as f:
        edit(f)
    return [str(v) for v in validate_store(path)]


def _replace(f: h5py.File, name: str, data: np.ndarray) -> None:
    del f[name]
    f.create_dataset(name, data=data, chunks=(1, *data.shape[1:]) if data.ndim == 3 else None)


def test_validate_missing_and_wrong_root_attrs(store) -> None:
    def edit(f):
        del f.attrs["created"]
        f.attrs["schema_version"] = 2
        f.attrs["classes"] = "not json"
    got = _broken(store, edit)
    assert "attrs/created: missing" in got
    assert any(v.startswith("attrs/schema_version: is 2") for v in got)
    assert "attrs/classes: not a JSON list of class names" in got


def test_validate_label_values_outside_classes(store) -> None:
    def edit(f):
        m = f["masks"][()]
        m[4, 0, 0] = 7
        _replace(f, "masks", m)
    got = _broken(store, edit)
    assert any(v.startswith("masks[4]: masks: values [7] outside classes 0-2 and 255") for v in got), got


def test_validate_label_state_inconsistent_with_mask(store) -> None:
    def edit(f):
        ls = f["label_state"][()]
        ls[1, 1] = 0  # says class 1 absent, but the mask has it
        f["label_state"][...] = ls
    got = _broken(store, edit)
    assert any("label_state 0 (absent) for class 1" in v and "[1]" in v for v in got), got


def test_validate_split_overlap_and_range(store) -> None:
    def edit(f):
        del f["splits/valid"]
        f["splits"].create_dataset("valid", data=np.array([1, 2], np.int64))  # sample 1 is patient p0
        del f["splits/test"]
        f["splits"].create_dataset("test", data=np.array([4, 99], np.int64))
    got = _broken(store, edit)
    assert any(v.startswith("splits/train & splits/valid: 1 patient(s) in both: p0") for v in got), got
    assert any(v.startswith("splits/test: indices outside 0-5: 99") for v in got), got


def test_validate_dtypes_shapes_and_meta(store) -> None:
    def edit(f):
        _replace(f, "scribbles", f["scribbles"][()].astype(np.int16))
        del f["meta/view"]
        f["meta/scribble_source"][0] = "by hand"
    got = _broken(store, edit)
    assert "scribbles: dtype int16, expected uint8" in got
    assert "meta/view: missing" in got
    assert any(v.startswith("meta/scribble_source[0]") for v in got), got


def test_validate_patient_table_and_nan_images(store) -> None:
    def edit(f):
        del f["patients/id"]
        f["patients"].create_dataset("id", data=np.array(["p0", "p1", "zz"], object),
                                     dtype=h5py.string_dtype())
        img = f["images"][()]
        img[3, 0, 0, 0] = np.nan
        f["images"][...] = img
    got = _broken(store, edit)
    assert any(v.startswith("meta/patient: 1 patient(s) not in patients/id: p2") for v in got), got
    assert any(v.startswith("images[3]: images: NaN or inf") for v in got), got


def test_validate_unreadable_file(tmp_path: Path) -> None:
    p = tmp_path / "x.h5"
    p.write_bytes(b"\x89HDF\r\n" + b"0" * 40)
    (v,) = validate_store(p)
    assert v.where == str(p) and "cannot be opened" in v.problem


def test_validate_scribble_source_none_with_labelled_pixels(store) -> None:
    def edit(f):
        f["meta/scribble_source"][2] = "none"  # sample 2 holds scribble pixels (see _samples)
    got = _broken(store, edit)
    assert "meta/scribble_source[2]: 'none' but the scribble holds labelled pixels" in got, got


def test_validate_names_a_json_attr_that_is_not_json_text(store) -> None:
    def edit(f):
        f.attrs["notes"] = "not json"
        f.attrs["skipped"] = "{}"
        f.attrs["scribble_synthesis"] = "[]"
    got = _broken(store, edit)
    assert "attrs/notes: expected JSON text of a list, found 'not json'" in got
    assert "attrs/skipped: expected JSON text of a list, found '{}'" in got
    assert "attrs/scribble_synthesis: expected JSON text of a dict, found '[]'" in got

