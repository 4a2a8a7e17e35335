"""A store's content fingerprint: which conversion a result was measured on, whatever its path.

Two files hold the same store when they have the same root attributes (less when, with what and
by which command line they were written: ``created``, ``datakit_version``, ``provenance``,
``command``, which name paths), the same image shape, dtype and normalisation, and the same
``meta/``, ``patients/`` and ``splits/`` tables (patients, frames, slices, spacings, source files,
split membership). Pixels are not read: the fingerprint costs what opening the store costs.
A copy, a move or a re-conversion of the same data with the same options has the same
fingerprint; another ``--size``, ``--spacing``, ``--norm``, ``--image-dtype``, split or patient
set has another.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from datakit.store.reader import Store

# root attrs that say when, how or by what a file was written, not what it holds
VOLATILE_ATTRS = ("created", "datakit_version", "provenance", "command")


def _update(h: Any, name: str, a: np.ndarray) -> None:
    a = np.asarray(a)
    h.update(name.encode())
    if a.dtype == object:  # decoded strings
        h.update(json.dumps([str(x) for x in a.ravel()]).encode())
    else:
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())


def fingerprint(store: Store) -> str:
    """sha256 (hex, 16 characters) of what identifies ``store``'s content (see the module doc)."""
    h = hashlib.sha256()
    attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in store.attrs.items()
             if k not in VOLATILE_ATTRS}
    h.update(json.dumps(attrs, sort_keys=True, default=str).encode())
    images = store.file["images"]
    norm = images.attrs.get("normalization", "")
    h.update(json.dumps([list(images.shape), str(images.dtype),
                         norm.decode() if isinstance(norm, bytes) else str(norm)]).encode())
    for group, table in (("meta", store.meta), ("patients", store.patients), ("splits", store.splits)):
        for k in sorted(table):
            _update(h, f"{group}/{k}", table[k])
    return h.hexdigest()[:16]
