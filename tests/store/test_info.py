"""store_info: the summary `datakit info` prints."""

from __future__ import annotations

from datakit.store import store_info
from tests.store.toy import CLASSES


def test_store_info(store) -> None:
    path, _ = store
    d = store_info(path)
    assert d["samples"] == 6 and d["patients"] == 3 and d["classes"] == CLASSES
    assert d["splits"] == {"train": {"samples": 2, "patients": 1}, "valid": {"samples": 2, "patients": 1},
                           "test": {"samples": 2, "patients": 1}}
    assert d["spacing_mm"] == [1.5, 1.5] and d["normalization"] == "zscore"
    assert d["image_dtype"] == "float32" and d["image_compression"] == "none"

