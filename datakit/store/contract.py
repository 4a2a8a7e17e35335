"""Names, dtypes and constants of the store contract (docs/store.md)."""

from __future__ import annotations

import json
from typing import Any

import h5py
import numpy as np

SCHEMA = "datakit-store"
SCHEMA_VERSION = 1

STR = h5py.string_dtype("utf-8")

# meta/<name>: (dtype, trailing shape). Every store has all of these, one row per sample.
META_COLUMNS: dict[str, tuple[object, tuple[int, ...]]] = {
    "dataset": (STR, ()),
    "patient": (STR, ()),
    "frame": (STR, ()),
    "view": (STR, ()),
    "slice": (np.int32, ()),
    "spacing": (np.float32, (2,)),
    "slice_spacing": (np.float32, ()),
    "source": (STR, ()),
    "scribble_source": (STR, ()),
}

# Root attrs that hold JSON text (docs/store.md), with the JSON type each holds.
JSON_ATTRS: dict[str, type] = {"classes": list, "skipped": list, "notes": list, "merged_from": list,
                               "scribble_synthesis": dict, "provenance": dict}

ROOT_ATTRS = ("schema", "schema_version", "datakit_version", "created", "command", "classes",
              "ignore_index", "image_size")

# Only filters that ship with h5py, so any h5py user can read a store.
IMAGE_GZIP_LEVEL = 1  # only with --image-compression gzip: float images barely compress past level 1
LABEL_GZIP_LEVEL = 1  # label maps are mostly constant: level 1 already shrinks them ~50x


def json_attr(key: str, value: Any) -> Any:
    """Root attr ``key`` as the store holds it: JSON text for the :data:`JSON_ATTRS`, else ``value``.

    Also reads back stores written before this rule: h5py stores an empty list as an empty float64
    array, not "[]" (``notes`` and ``skipped`` of most conversions); such a value is "[]" here.
    """
    if key not in JSON_ATTRS or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, np.ndarray):
        value = value.tolist()
    return json.dumps(value)
