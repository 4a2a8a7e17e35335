"""The one cheap structural check every store consumer opens a store through.

:class:`datakit.store.Store` runs :func:`check_structure` when it opens a file, so ``info``,
``stats``, ``preview``, ``merge``, ``export``, ``scribble`` and ``train`` refuse a broken store
with the violation instead of failing somewhere inside. It reads the contract's attributes, the
shapes and dtypes of the datasets, the lengths of the ``meta/`` and ``patients/`` columns and the
split indices; never the sample arrays (that is ``datakit validate``'s full scan). A store of a
newer ``schema_version`` than this datakit knows is refused.

:func:`check_label_values` is the streamed scan that the commands which act on label values
(``merge``, ``export nnunet``, ``train``) run before they write anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from datakit.errors import DatakitError
from datakit.store.contract import IGNORE_INDEX, META_COLUMNS, SCHEMA, SCHEMA_VERSION

if TYPE_CHECKING:
    from datakit.store.reader import Store

MAX_SHOWN = 3  # violations named in one error message


def schema_version_of(value: object) -> int | None:
    """The ``schema_version`` attribute as an int; None when it is not a whole number."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not np.isfinite(number) or number != int(number) or isinstance(value, (bool, np.bool_)):
        return None
    return int(number)


def structural_violations(f: h5py.File) -> list[str]:
    """Violations of the contract's structure (attrs, shapes, dtypes, lengths, split indices)."""
    from datakit.store.validate import _check_arrays, _check_root

    found: list = []
    version = schema_version_of(f.attrs.get("schema_version"))
    if "schema_version" in f.attrs and version is not None and version > SCHEMA_VERSION:
        # before anything else: a newer store may differ in every other respect
        return [f"attrs/schema_version: is {version}, newer than this datakit reads ({SCHEMA_VERSION}); "
                f"upgrade datakit"]
    classes = _check_root(f, found)
    k = len(classes) if classes else None
    n = _check_arrays(f, k, found)
    if n is not None:
        size = tuple(int(x) for x in np.asarray(f.attrs.get("image_size", (0, 0))).ravel()[:2])
        if len(size) == 2 and min(size) < 1:
            found.append(f"attrs/image_size: {list(size)}, expected two positive sizes")
        _check_tables(f, n, found)
    return [str(v) for v in found]


def _check_tables(f: h5py.File, n: int, out: list) -> None:
    g = f.get("meta")
    if not isinstance(g, h5py.Group):
        out.append("meta: missing group")
    else:
        for name, (_, tail) in META_COLUMNS.items():
            d = g.get(name)
            if not isinstance(d, h5py.Dataset):
                out.append(f"meta/{name}: missing")
            elif d.shape != (n, *tail):
                out.append(f"meta/{name}: shape {d.shape}, expected {(n, *tail)}")
        for name, d in g.items():
            if name not in META_COLUMNS and (not isinstance(d, h5py.Dataset) or d.shape[:1] != (n,)):
                out.append(f"meta/{name}: length {getattr(d, 'shape', ())[:1]}, expected ({n},)")
    p = f.get("patients")
    if isinstance(p, h5py.Group) and "id" in p:
        rows = p["id"].shape[:1] if isinstance(p["id"], h5py.Dataset) else None
        for name, d in p.items():
            if not isinstance(d, h5py.Dataset) or d.ndim != 1 or d.shape[:1] != rows:
                out.append(f"patients/{name}: shape {getattr(d, 'shape', None)}, expected {rows}")
    s = f.get("splits")
    if s is not None and not isinstance(s, h5py.Group):
        out.append("splits: not a group")
    elif s is not None:
        for name, d in s.items():
            if not isinstance(d, h5py.Dataset) or d.ndim != 1 or d.dtype.kind not in "iu":
                out.append(f"splits/{name}: expected 1-D integer sample indices, found "
                           f"{getattr(d, 'dtype', 'a group')} {getattr(d, 'shape', '')}")
                continue
            idx = d[()]
            if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= n):
                bad = idx[(idx < 0) | (idx >= n)]
                out.append(f"splits/{name}: {len(bad)} indices outside 0-{n - 1} (e.g. {int(bad[0])})")


def check_structure(f: h5py.File, path: str | Path) -> None:
    """Raise a :class:`DatakitError` naming the store and its first violations, if any."""
    schema = f.attrs.get("schema")
    if isinstance(schema, bytes):
        schema = schema.decode("utf-8", "replace")
    if schema != SCHEMA:
        raise DatakitError(f"not a datakit store (attr schema={schema!r})", path)
    problems = structural_violations(f)
    if problems:
        more = f" (and {len(problems) - MAX_SHOWN} more; `datakit validate` lists all)" \
            if len(problems) > MAX_SHOWN else ""
        raise DatakitError("broken store: " + "; ".join(problems[:MAX_SHOWN]) + more, path)


def check_label_values(store: Store, names: Sequence[str] = ("masks", "scribbles"),
                       indices: np.ndarray | None = None, chunk: int = 256) -> None:
    """Refuse label values outside the store's classes (and 255), streamed chunk by chunk."""
    k = len(store.classes)
    for name in names:
        for part, block in store.iter_chunks(name, indices, chunk):
            bad = (block >= k) & (block != IGNORE_INDEX)
            if bad.any():
                rows = np.flatnonzero(bad.reshape(len(block), -1).any(axis=1))
                values = sorted(int(v) for v in np.unique(block[bad]))[:5]
                raise DatakitError(f"{name}[{int(part[rows[0]])}]: values {values} outside classes 0-{k - 1} "
                                   f"and {IGNORE_INDEX} ({len(rows)} sample(s) of this block; "
                                   f"`datakit validate` lists all)", store.path)
