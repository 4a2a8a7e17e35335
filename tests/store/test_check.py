"""The structural rules Store() runs when it opens a file, and the label-value scan."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from datakit.errors import DatakitError
from datakit.store import Store, validate_store


def test_reader_refuses_non_store(tmp_path: Path) -> None:
    p = tmp_path / "x.h5"
    with h5py.File(p, "w") as f:
        f.attrs["schema"] = "other"
    with pytest.raises(DatakitError, match="not a datakit store"):
        Store(p)
    (tmp_path / "t.h5").write_text("not hdf5")
    with pytest.raises(DatakitError, match="not a readable HDF5"):
        Store(tmp_path / "t.h5")



def _edited(store, edit) -> Path:
    path, _ = store
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def _int32_split(f: h5py.File) -> None:
    data = f["splits/valid"][()].astype(np.int32)
    del f["splits/valid"]
    f["splits"].create_dataset("valid", data=data)


def _no_split_attrs(f: h5py.File) -> None:
    del f["splits"].attrs["method"]


def _unsorted_split(f: h5py.File) -> None:
    del f["splits/train"]
    f["splits"].create_dataset("train", data=np.array([1, 0], np.int64))


def _no_patients(f: h5py.File) -> None:
    del f["patients"]


def _meta_dtype(f: h5py.File) -> None:
    data = f["meta/slice"][()].astype(np.int64)
    del f["meta/slice"]
    f["meta"].create_dataset("slice", data=data)


@pytest.mark.parametrize(("edit", "where"), [
    (_int32_split, "splits/valid: dtype int32"),  # the contract: int64 (an earlier copy of the rule took any int)
    (_no_split_attrs, "splits.attrs/method: missing"),
    (_unsorted_split, "splits/train: indices not sorted and unique"),
    (_no_patients, "patients/id: missing"),
    (_meta_dtype, "meta/slice: dtype int64, expected int32"),
])
def test_store_and_validate_apply_the_same_structural_rule(store, edit, where: str) -> None:
    """One rule, two users: Store() refuses what validate reports, with the same words."""
    path = _edited(store, edit)
    assert any(str(v).startswith(where) for v in validate_store(path)), validate_store(path)
    with pytest.raises(DatakitError, match="broken store: " + re.escape(where)):
        Store(path)


def test_validate_lists_what_store_refuses_and_more(store) -> None:
    """validate = the structural violations (the very objects) + the sample scan + the cross-table checks."""
    from datakit.store.check import structural_violations

    def edit(f: h5py.File) -> None:
        _int32_split(f)
        f["masks"][0, 0, 0] = 9  # a label value: only the sample scan sees it
    path = _edited(store, edit)
    with h5py.File(path) as f:
        structural = structural_violations(f)
    full = validate_store(path)
    assert structural and set(structural) < set(full)
    assert any(v.where == "masks[0]" for v in set(full) - set(structural))


def test_a_newer_schema_version_is_refused_before_anything_else(store) -> None:
    def edit(f: h5py.File) -> None:
        f.attrs["schema_version"] = 2
        del f["meta"]
    path = _edited(store, edit)
    with pytest.raises(DatakitError, match=r"schema_version: is 2, newer than this datakit reads \(1\); upgrade") as e:
        Store(path)
    assert "meta" not in str(e.value)
    assert {"attrs/schema_version", "meta"} <= {v.where for v in validate_store(path)}  # validate lists all
