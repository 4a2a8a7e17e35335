"""The ``official`` split method: a split the source ships, checked like a split file."""

from __future__ import annotations

import pytest

from datakit.errors import DatakitError
from datakit.splits import make_splits


def test_official_mapping_is_checked_against_the_patients() -> None:
    res = make_splits("official", ["a", "b", "c", "d"], official={"train": ["a", "b", "x"], "test": ["c"]},
                      official_name="folder:demo")
    assert res.patients == {"train": ["a", "b"], "test": ["c"]}
    assert res.method == "official:folder:demo" and res.seed is None
    assert any("absent from the data: x" in n for n in res.notes)
    assert any("1 patient(s) in no split: d" in n for n in res.notes)


def test_official_errors() -> None:
    with pytest.raises(DatakitError, match="ships no official split"):
        make_splits("official", ["a"])
    with pytest.raises(DatakitError, match="patient a is listed in both 'train' and 'test'"):
        make_splits("official", ["a"], official={"train": ["a"], "test": ["a"]})
    with pytest.raises(DatakitError, match="or official"):
        make_splits("nonsense", ["a"])
