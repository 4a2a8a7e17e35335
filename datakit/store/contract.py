"""Names, dtypes and constants of the store contract (../shared/STORE.md, restated in docs/store.md)."""

from __future__ import annotations

import h5py
import numpy as np

from datakit.constants import IGNORE

SCHEMA = "datakit-store"
SCHEMA_VERSION = 1
IGNORE_INDEX = IGNORE  # the store's ignore_index attribute

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

ROOT_ATTRS = ("schema", "schema_version", "datakit_version", "created", "command", "classes",
              "ignore_index", "image_size")

# Only filters that ship with h5py, so any h5py user can read a store.
IMAGE_GZIP_LEVEL = 1  # only with --image-compression gzip: float images barely compress past level 1
LABEL_GZIP_LEVEL = 1  # label maps are mostly constant: level 1 already shrinks them ~50x
