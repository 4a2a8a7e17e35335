"""The structural rules of the store contract (docs/store.md), written once.

:func:`structural_violations` checks everything that can be decided from the file's attributes,
the shapes, dtypes, chunking and filters of its datasets, the columns of ``meta/`` and ``patients/``
and the split indices: never a sample array. :class:`datakit.store.Store` runs it (through
:func:`check_structure`) whenever it opens a file, so ``info``, ``stats``, ``preview``, ``merge``,
``export``, ``scribble`` and ``train`` refuse a broken store with the violation instead of failing
somewhere inside; it costs milliseconds on any store. ``datakit validate``
(:mod:`datakit.store.validate`) runs the same rules, then scans the samples and checks the tables
against each other. A store of a newer ``schema_version`` than this datakit reads is refused.

:func:`check_label_values` is the streamed scan that the commands which act on label values
(``merge``, ``scribble``, ``export nnunet``, ``train``) run before they write anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import h5py
import numpy as np

from datakit.constants import IGNORE
from datakit.errors import DatakitError
from datakit.store.contract import JSON_ATTRS, META_COLUMNS, ROOT_ATTRS, SCHEMA, SCHEMA_VERSION, json_attr

MAX_SHOWN = 3  # violations named in one error message
MAX_LISTED = 5  # sample indices listed per problem before "... and N more"
SAMPLE_ARRAYS = ("images", "masks", "scribbles", "label_state")
SPLIT_ATTRS = ("method", "seed", "ratios")


@dataclass(frozen=True)
class Violation:
    """One broken clause of the contract and where it is."""

    where: str  # e.g. "attrs/classes", "masks[12]", "splits/train"
    problem: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


def listed(idx: np.ndarray) -> str:
    """Sample indices for a message: the first few, then how many more."""
    shown = ", ".join(str(int(i)) for i in idx[:MAX_LISTED])
    return shown + (f" ... and {len(idx) - MAX_LISTED} more" if len(idx) > MAX_LISTED else "")


def text(v: object) -> str:
    """An HDF5 string (bytes or str) as str."""
    return v.decode() if isinstance(v, bytes) else str(v)


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


def _size(value: object) -> tuple[int, int]:
    """``image_size`` as ints; (-1, -1) when it is not two numbers (reported by _check_root)."""
    try:
        size = tuple(int(x) for x in np.asarray(value).ravel()[:2])
    except (TypeError, ValueError):
        return (-1, -1)
    return (size[0], size[1]) if len(size) == 2 else (-1, -1)


def _short(value: object, limit: int = 60) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else shown[:limit] + "..."


def class_names(f: h5py.File) -> list[str] | None:
    """``attrs/classes`` as a list of names; None when missing or not a JSON list of names."""
    try:
        classes = json.loads(text(f.attrs["classes"]))
    except (KeyError, ValueError):
        return None
    if isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes):
        return classes
    return None


def sample_count(f: h5py.File) -> int | None:
    """N, when the four sample arrays are datasets and ``images`` is 4-D (else nothing is checked against N)."""
    if not all(isinstance(f.get(d), h5py.Dataset) for d in SAMPLE_ARRAYS) or f["images"].ndim != 4:
        return None
    return int(f["images"].shape[0])


def _check_root(f: h5py.File, out: list[Violation]) -> list[str] | None:
    """Root attributes; returns the class names when they are readable."""
    for a in ROOT_ATTRS:
        if a not in f.attrs:
            out.append(Violation(f"attrs/{a}", "missing"))
    if "schema" in f.attrs and text(f.attrs["schema"]) != SCHEMA:
        out.append(Violation("attrs/schema", f"is {text(f.attrs['schema'])!r}, expected {SCHEMA!r}"))
    if "schema_version" in f.attrs:
        version = schema_version_of(f.attrs["schema_version"])
        if version is None:
            out.append(Violation("attrs/schema_version", f"is {f.attrs['schema_version']!r}, not a whole number"))
        elif version != SCHEMA_VERSION:
            out.append(Violation("attrs/schema_version", f"is {version}, this datakit reads {SCHEMA_VERSION}"))
    if "ignore_index" in f.attrs and schema_version_of(f.attrs["ignore_index"]) != IGNORE:
        out.append(Violation("attrs/ignore_index", f"is {f.attrs['ignore_index']!r}, expected {IGNORE}"))
    classes = class_names(f)
    if "classes" in f.attrs and classes is None:
        out.append(Violation("attrs/classes", "not a JSON list of class names"))
    elif classes is not None and len(classes) > IGNORE:
        out.append(Violation("attrs/classes", f"{len(classes)} classes; at most {IGNORE} fit uint8"))
    if "image_size" in f.attrs:
        size = np.asarray(f.attrs["image_size"])
        if size.shape != (2,) or size.dtype.kind not in "iu":
            out.append(Violation("attrs/image_size", f"expected int[2], found {size!r}"))
        elif size.min() < 1:
            out.append(Violation("attrs/image_size", f"{size.tolist()}, expected two positive sizes"))
    _check_json_attrs(f, out)
    return classes


def _check_json_attrs(f: h5py.File, out: list[Violation]) -> None:
    """datakit's JSON-text attrs (``notes``, ``skipped``, ...), where present, parse as their JSON type. An
    empty array is accepted as an empty list: datakit wrote ``[]`` that way before the rule was enforced."""
    for key, kind in JSON_ATTRS.items():
        if key == "classes" or key not in f.attrs:  # classes: checked above, with its own message
            continue
        try:
            value = json.loads(json_attr(key, f.attrs[key]))
        except (TypeError, ValueError):
            value = None
        if not isinstance(value, kind):
            out.append(Violation(f"attrs/{key}", f"expected JSON text of a {kind.__name__}, found "
                                                 f"{_short(f.attrs[key])}"))


def _check_arrays(f: h5py.File, k: int | None, out: list[Violation]) -> int | None:
    """The sample arrays' shapes, dtypes, chunks and filters; returns N when ``images`` gives it."""
    missing = [d for d in SAMPLE_ARRAYS if not isinstance(f.get(d), h5py.Dataset)]
    for d in missing:
        out.append(Violation(d, "missing dataset"))
    if missing:
        return None
    img = f["images"]
    if img.ndim != 4:
        out.append(Violation("images", f"shape {img.shape}, expected (N, C, H, W)"))
        return None
    n = img.shape[0]
    size = _size(f.attrs.get("image_size", (-1, -1)))
    if img.shape[1] not in (1, 3) or img.shape[2:] != size:
        out.append(Violation("images", f"shape {img.shape}, expected (N, 1|3, {size[0]}, {size[1]})"))
    if img.dtype not in (np.float32, np.float16):  # float16: the half-precision extension (docs/store.md)
        out.append(Violation("images", f"dtype {img.dtype}, expected float32 (or float16)"))
    if "normalization" not in img.attrs:
        out.append(Violation("images.attrs/normalization", "missing"))
    for name in ("masks", "scribbles"):
        d = f[name]
        if d.shape != (n, *size):
            out.append(Violation(name, f"shape {d.shape}, expected ({n}, {size[0]}, {size[1]})"))
        if d.dtype != np.uint8:
            out.append(Violation(name, f"dtype {d.dtype}, expected uint8"))
    for name in ("images", "masks", "scribbles"):
        d = f[name]
        if d.chunks is None or d.chunks[0] != 1 or tuple(d.chunks[1:]) != d.shape[1:]:
            out.append(Violation(name, f"chunks {d.chunks}, expected one sample per chunk"))
        filters = set(d._filters) if hasattr(d, "_filters") else set()
        foreign = filters - {"gzip", "lzf", "shuffle", "fletcher32", "scaleoffset"}
        if foreign:
            out.append(Violation(name, f"filters {sorted(foreign)} do not ship with h5py"))
    ls = f["label_state"]
    if k is not None and ls.shape != (n, k):
        out.append(Violation("label_state", f"shape {ls.shape}, expected ({n}, {k})"))
    if ls.dtype != np.int8:
        out.append(Violation("label_state", f"dtype {ls.dtype}, expected int8"))
    if "keypoints" in f:
        _check_keypoints(f["keypoints"], n, out)
    return n


def _check_keypoints(kp: object, n: int, out: list[Violation]) -> None:
    if not isinstance(kp, h5py.Dataset):
        out.append(Violation("keypoints", "not a dataset"))
        return
    if kp.ndim != 3 or kp.shape[0] != n or kp.shape[2] != 3 or kp.dtype != np.float32:
        out.append(Violation("keypoints", f"shape {kp.shape} {kp.dtype}, expected (N, P, 3) float32"))
    try:
        names = json.loads(text(kp.attrs["names"]))
        if len(names) != kp.shape[1]:
            out.append(Violation("keypoints.attrs/names", f"{len(names)} names for {kp.shape[1]} points"))
    except (KeyError, ValueError, TypeError):
        out.append(Violation("keypoints.attrs/names", "missing or not a JSON list"))


def _check_meta(f: h5py.File, n: int, out: list[Violation]) -> None:
    """``meta/``: every contract column with its shape and dtype, every other column N rows long."""
    g = f.get("meta")
    if not isinstance(g, h5py.Group):
        out.append(Violation("meta", "missing group"))
        return
    for name, (dtype, tail) in META_COLUMNS.items():
        d = g.get(name)
        if not isinstance(d, h5py.Dataset):
            out.append(Violation(f"meta/{name}", "missing"))
        elif d.shape != (n, *tail):
            out.append(Violation(f"meta/{name}", f"shape {d.shape}, expected {(n, *tail)}"))
        elif dtype is np.int32 or dtype is np.float32:
            if d.dtype != dtype:
                out.append(Violation(f"meta/{name}", f"dtype {d.dtype}, expected {np.dtype(dtype)}"))
        elif h5py.check_string_dtype(d.dtype) is None:
            out.append(Violation(f"meta/{name}", f"dtype {d.dtype}, expected a string"))
    for name, d in g.items():
        if name not in META_COLUMNS and (not isinstance(d, h5py.Dataset) or d.shape[:1] != (n,)):
            out.append(Violation(f"meta/{name}", f"length {getattr(d, 'shape', ())[:1]}, expected ({n},)"))
    affine = g.get("source_affine")
    if isinstance(affine, h5py.Dataset) and (affine.shape != (n, 4, 4) or affine.dtype != np.float64):
        out.append(Violation("meta/source_affine", f"shape {affine.shape} {affine.dtype}, "
                                                   f"expected ({n}, 4, 4) float64"))


def _check_patients(f: h5py.File, out: list[Violation]) -> None:
    """``patients/``: an ``id`` column, and every column 1-D with one row per id, float64 or text."""
    g = f.get("patients")
    if not isinstance(g, h5py.Group) or not isinstance(g.get("id"), h5py.Dataset):
        out.append(Violation("patients/id", "missing"))
        return
    rows = g["id"].shape[:1]
    for name, d in g.items():
        if not isinstance(d, h5py.Dataset) or d.ndim != 1 or d.shape[:1] != rows:
            out.append(Violation(f"patients/{name}", f"shape {getattr(d, 'shape', None)}, expected {rows}"))
        elif d.dtype != np.float64 and h5py.check_string_dtype(d.dtype) is None:
            out.append(Violation(f"patients/{name}", f"dtype {d.dtype}, expected float64 or a string"))


def split_indices(f: h5py.File, n: int, out: list[Violation]) -> dict[str, np.ndarray]:
    """``splits/``: the group with its attrs, each split 1-D int64 sample indices, sorted, unique and in
    0..N-1. Returns the splits whose indices are in range (for the cross-table checks of validate)."""
    g = f.get("splits")
    if not isinstance(g, h5py.Group):
        out.append(Violation("splits", "missing group" if g is None else "not a group"))
        return {}
    for a in SPLIT_ATTRS:
        if a not in g.attrs:
            out.append(Violation(f"splits.attrs/{a}", "missing"))
    good: dict[str, np.ndarray] = {}
    for name, d in g.items():
        if not isinstance(d, h5py.Dataset) or d.dtype != np.int64 or d.ndim != 1:
            out.append(Violation(f"splits/{name}", f"dtype {getattr(d, 'dtype', 'a group')} shape "
                                                   f"{getattr(d, 'shape', '')}, expected 1-D int64"))
            continue
        idx = d[()]
        if len(idx) and (idx.min() < 0 or idx.max() >= n):
            out.append(Violation(f"splits/{name}", f"indices outside 0-{n - 1}: {listed(idx[(idx < 0) | (idx >= n)])}"))
            continue
        if np.any(np.diff(idx) <= 0):
            out.append(Violation(f"splits/{name}", "indices not sorted and unique"))
        good[name] = idx
    return good


def structural_violations(f: h5py.File) -> list[Violation]:
    """Every violation of the contract's structure; reads no sample array."""
    out: list[Violation] = []
    classes = _check_root(f, out)
    n = _check_arrays(f, len(classes) if classes else None, out)
    if n is not None:
        _check_meta(f, n, out)
        _check_patients(f, out)
        split_indices(f, n, out)
    return out


def check_structure(f: h5py.File, path: str | Path) -> None:
    """Raise a :class:`DatakitError` naming the store and its first violations, if any."""
    schema = f.attrs.get("schema")
    if isinstance(schema, bytes):
        schema = schema.decode("utf-8", "replace")
    if schema != SCHEMA:
        raise DatakitError(f"not a datakit store (attr schema={schema!r})", path)
    version = schema_version_of(f.attrs.get("schema_version"))
    if version is not None and version > SCHEMA_VERSION:  # a newer store may differ in every other respect
        raise DatakitError(f"broken store: attrs/schema_version: is {version}, newer than this datakit reads "
                           f"({SCHEMA_VERSION}); upgrade datakit", path)
    problems = [str(v) for v in structural_violations(f)]
    if problems:
        more = f" (and {len(problems) - MAX_SHOWN} more; `datakit validate` lists all)" \
            if len(problems) > MAX_SHOWN else ""
        raise DatakitError("broken store: " + "; ".join(problems[:MAX_SHOWN]) + more, path)


class LabelBlocks(Protocol):
    """What :func:`check_label_values` reads: a :class:`datakit.store.Store` (named by what it does, not
    imported: the reader runs this module's checks, so this module cannot import the reader)."""

    path: Path

    @property
    def classes(self) -> list[str]: ...

    def iter_chunks(self, name: str, indices: np.ndarray | None = None,
                    chunk: int = 256) -> Iterator[tuple[np.ndarray, np.ndarray]]: ...


def check_label_values(store: LabelBlocks, names: Sequence[str] = ("masks", "scribbles"),
                       indices: np.ndarray | None = None, chunk: int = 256) -> None:
    """Refuse label values outside the store's classes (and 255), streamed chunk by chunk."""
    k = len(store.classes)
    for name in names:
        for part, block in store.iter_chunks(name, indices, chunk):
            bad = (block >= k) & (block != IGNORE)
            if bad.any():
                rows = np.flatnonzero(bad.reshape(len(block), -1).any(axis=1))
                values = sorted(int(v) for v in np.unique(block[bad]))[:5]
                raise DatakitError(f"{name}[{int(part[rows[0]])}]: values {values} outside classes 0-{k - 1} "
                                   f"and {IGNORE} ({len(rows)} sample(s) of this block; "
                                   f"`datakit validate` lists all)", store.path)
