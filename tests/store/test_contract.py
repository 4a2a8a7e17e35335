"""The contract's JSON-text attrs: an empty list is "[]", also when read from a store that holds it as an array."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from datakit.store import Store, store_info, validate_store
from tests.store.toy import CLASSES, legacy_store


def test_json_attrs_read_as_json_text_from_stores_holding_an_empty_array(tmp_path: Path) -> None:
    from datakit.store.contract import json_attr

    path = legacy_store(tmp_path / "s.h5")
    with Store(path) as s:
        assert s.attrs["notes"] == "[]" and s.attrs["skipped"] == "[]"
        assert json.loads(s.attrs["classes"]) == CLASSES
    assert store_info(path)["notes"] == [] and store_info(path)["skipped"] == []
    assert validate_store(path) == []  # accepted: datakit itself wrote them so
    # the contract's form, for every JSON attr; other attrs untouched
    assert json_attr("notes", []) == "[]" and json_attr("skipped", np.zeros(0)) == "[]"
    assert json_attr("notes", '["kept"]') == '["kept"]' and json_attr("scribble_synthesis", {"a": 1}) == '{"a": 1}'
    assert json_attr("image_size", [1, 2]) == [1, 2]


def test_copies_of_a_store_write_json_attrs_as_json_text(tmp_path: Path) -> None:
    """``datakit scribble`` and ``pack_store`` copy root attrs: a legacy empty array becomes "[]"."""
    from datakit.rescribble import rescribble
    from datakit.store.pack import pack_store

    src = legacy_store(tmp_path / "s.h5")
    rescribble(src, tmp_path / "r.h5", "skeleton")
    pack_store(src, tmp_path / "p.h5")
    for out in ("r.h5", "p.h5"):
        with h5py.File(tmp_path / out, "r") as f:
            assert f.attrs["skipped"] == "[]", out
            assert isinstance(f.attrs["notes"], str) and isinstance(json.loads(f.attrs["notes"]), list), out
        assert validate_store(tmp_path / out) == [], out

