"""Check a store against every clause of the contract; report all violations with their location.

Reads h5py directly (not :class:`Store`) so that a broken store is described, not refused.
Sample arrays are streamed in chunks, so memory stays bounded on any store size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from datakit.errors import DatakitError
from datakit.safe_io import regular_file
from datakit.store.check import schema_version_of
from datakit.store.contract import (
    IGNORE_INDEX,
    JSON_ATTRS,
    META_COLUMNS,
    ROOT_ATTRS,
    SCHEMA,
    SCHEMA_VERSION,
    json_attr,
)

CHUNK = 256
MAX_LISTED = 5  # sample indices listed per problem before "... and N more"


@dataclass(frozen=True)
class Violation:
    where: str  # e.g. "attrs/classes", "masks[12]", "splits/train"
    problem: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


def _listed(idx: np.ndarray) -> str:
    shown = ", ".join(str(int(i)) for i in idx[:MAX_LISTED])
    return shown + (f" ... and {len(idx) - MAX_LISTED} more" if len(idx) > MAX_LISTED else "")


def _text(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _size(value: object) -> tuple[int, ...]:
    """``image_size`` as ints; (-1, -1) when it is not two numbers (reported by _check_root)."""
    try:
        size = tuple(int(x) for x in np.asarray(value).ravel()[:2])
    except (TypeError, ValueError):
        return (-1, -1)
    return size if len(size) == 2 else (-1, -1)


def _check_root(f: h5py.File, out: list[Violation]) -> list[str] | None:
    for a in ROOT_ATTRS:
        if a not in f.attrs:
            out.append(Violation(f"attrs/{a}", "missing"))
    if "schema" in f.attrs and _text(f.attrs["schema"]) != SCHEMA:
        out.append(Violation("attrs/schema", f"is {_text(f.attrs['schema'])!r}, expected {SCHEMA!r}"))
    if "schema_version" in f.attrs:
        version = schema_version_of(f.attrs["schema_version"])
        if version is None:
            out.append(Violation("attrs/schema_version", f"is {f.attrs['schema_version']!r}, not a whole number"))
        elif version != SCHEMA_VERSION:
            out.append(Violation("attrs/schema_version",
                                 f"is {version}, this datakit reads {SCHEMA_VERSION}"))
    if "ignore_index" in f.attrs and schema_version_of(f.attrs["ignore_index"]) != IGNORE_INDEX:
        out.append(Violation("attrs/ignore_index", f"is {f.attrs['ignore_index']!r}, expected 255"))
    classes = None
    if "classes" in f.attrs:
        try:
            classes = json.loads(_text(f.attrs["classes"]))
            if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
                raise ValueError
            if len(classes) > IGNORE_INDEX:
                out.append(Violation("attrs/classes", f"{len(classes)} classes; at most 255 fit uint8"))
        except ValueError:
            out.append(Violation("attrs/classes", "not a JSON list of class names"))
            classes = None
    if "image_size" in f.attrs:
        size = np.asarray(f.attrs["image_size"])
        if size.shape != (2,) or size.dtype.kind not in "iu":
            out.append(Violation("attrs/image_size", f"expected int[2], found {size!r}"))
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


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _check_arrays(f: h5py.File, k: int | None, out: list[Violation]) -> int | None:
    missing = [d for d in ("images", "masks", "scribbles", "label_state") if not isinstance(f.get(d), h5py.Dataset)]
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
    if img.ndim != 4 or img.shape[1] not in (1, 3) or img.shape[2:] != size:
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
        kp = f["keypoints"]
        if not isinstance(kp, h5py.Dataset):
            out.append(Violation("keypoints", "not a dataset"))
            return n
        if kp.ndim != 3 or kp.shape[0] != n or kp.shape[2] != 3 or kp.dtype != np.float32:
            out.append(Violation("keypoints", f"shape {kp.shape} {kp.dtype}, expected (N, P, 3) float32"))
        try:
            names = json.loads(_text(kp.attrs["names"]))
            if len(names) != kp.shape[1]:
                out.append(Violation("keypoints.attrs/names", f"{len(names)} names for {kp.shape[1]} points"))
        except (KeyError, ValueError):
            out.append(Violation("keypoints.attrs/names", "missing or not a JSON list"))
    return n


def _check_samples(f: h5py.File, n: int, k: int, out: list[Violation]) -> np.ndarray:
    """Stream images/masks/scribbles: finite images, label values, label_state consistency.

    Returns which samples' scribbles hold labelled pixels (for the scribble_source check), so the
    scribbles are read once."""
    ls_all = f["label_state"][()]
    bad_state = np.flatnonzero(~np.isin(ls_all, (-1, 0, 1)).all(axis=1))
    if len(bad_state):
        out.append(Violation(f"label_state[{_listed(bad_state)}]", "values outside {-1, 0, 1}"))
    problems: dict[str, list[int]] = {}
    scribbled = np.zeros(n, bool)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        images = f["images"][start:stop]
        for j in np.flatnonzero(~np.isfinite(images.reshape(len(images), -1)).all(axis=1)):
            problems.setdefault("images: NaN or inf values", []).append(start + j)
        present = {}
        for name in ("masks", "scribbles"):
            arr = f[name][start:stop].reshape(stop - start, -1)
            if name == "scribbles":
                scribbled[start:stop] = (arr != IGNORE_INDEX).any(axis=1)
            bad = (arr >= k) & (arr != IGNORE_INDEX)
            for j in np.flatnonzero(bad.any(axis=1)):
                vals = sorted(set(np.unique(arr[j][bad[j]]).tolist()))
                problems.setdefault(f"{name}: values {vals} outside classes 0-{k - 1} and 255", []) \
                    .append(start + j)
            # per-sample class histogram (255 and out-of-range dropped)
            counts = np.zeros((stop - start, k), np.int64)
            for c in range(k):
                counts[:, c] = (arr == c).sum(axis=1)
            present[name] = counts > 0
            if name == "masks":
                known_full = (arr != IGNORE_INDEX).all(axis=1)
        ls = ls_all[start:stop]
        for j, c in zip(*np.nonzero((ls == 0) & (present["masks"] | present["scribbles"])), strict=True):
            problems.setdefault(f"label_state 0 (absent) for class {c} whose pixels are labelled", []) \
                .append(start + j)
        for j, c in zip(*np.nonzero((ls == 1) & known_full[:, None] & ~present["masks"]), strict=True):
            problems.setdefault(f"label_state 1 (present) for class {c} missing from a complete mask", []) \
                .append(start + j)
    for problem, idx in problems.items():
        arr = np.unique(np.asarray(idx))
        out.append(Violation(f"{problem.split(':')[0].split(' ')[0]}[{_listed(arr)}]", problem))
    return scribbled


def _check_affines(d: h5py.Dataset, n: int, out: list[Violation]) -> None:
    """``meta/source_affine`` (datakit extension): (N, 4, 4) float64, finite, invertible, last row 0 0 0 1."""
    if d.shape != (n, 4, 4) or d.dtype != np.float64:
        out.append(Violation("meta/source_affine", f"shape {d.shape} {d.dtype}, expected ({n}, 4, 4) float64"))
        return
    a = d[()]
    finite = np.isfinite(a).all(axis=(1, 2))
    bad = ~finite | ~np.all(a[:, 3] == (0, 0, 0, 1), axis=1)
    bad[finite] |= np.abs(np.linalg.det(a[finite, :3, :3])) < 1e-12
    if bad.any():
        out.append(Violation(f"meta/source_affine[{_listed(np.flatnonzero(bad))}]",
                             "not an affine: non-finite, singular, or last row not 0 0 0 1"))


def _check_meta(f: h5py.File, n: int, out: list[Violation], scribbled: np.ndarray | None) -> np.ndarray | None:
    if "meta" not in f:
        out.append(Violation("meta", "missing group"))
        return None
    g = f["meta"]
    for name, (dtype, tail) in META_COLUMNS.items():
        if name not in g:
            out.append(Violation(f"meta/{name}", "missing"))
            continue
        d = g[name]
        if d.shape != (n, *tail):
            out.append(Violation(f"meta/{name}", f"shape {d.shape}, expected ({n}{', 2' if tail else ''})"))
            continue
        if dtype is np.int32 or dtype is np.float32:
            if d.dtype != dtype:
                out.append(Violation(f"meta/{name}", f"dtype {d.dtype}, expected {np.dtype(dtype)}"))
        elif h5py.check_string_dtype(d.dtype) is None:
            out.append(Violation(f"meta/{name}", f"dtype {d.dtype}, expected a string"))
    for name, d in g.items():
        if name not in META_COLUMNS and d.shape[:1] != (n,):
            out.append(Violation(f"meta/{name}", f"length {d.shape[:1]}, expected {n}"))
    if "source_affine" in g:
        _check_affines(g["source_affine"], n, out)
    if "scribble_source" in g and g["scribble_source"].shape == (n,):
        src = np.array([_text(x) for x in g["scribble_source"][()]])
        bad = np.flatnonzero(~(np.isin(src, ("manual", "none")) | np.char.startswith(src, "synthetic:")))
        if len(bad):
            out.append(Violation(f"meta/scribble_source[{_listed(bad)}]",
                                 "expected 'manual', 'synthetic:<algorithm>' or 'none'"))
        none_with_pixels = np.flatnonzero(scribbled & (src == "none")) if scribbled is not None else []
        if len(none_with_pixels):
            out.append(Violation(f"meta/scribble_source[{_listed(none_with_pixels)}]",
                                 "'none' but the scribble holds labelled pixels"))
    if "patient" not in g or g["patient"].shape != (n,):
        return None
    patients = np.array([_text(x) for x in g["patient"][()]], dtype=object)
    empty = np.flatnonzero(patients == "")
    if len(empty):
        out.append(Violation(f"meta/patient[{_listed(empty)}]", "empty patient id"))
    return patients


def _check_patients(f: h5py.File, patients: np.ndarray | None, out: list[Violation]) -> None:
    g = f.get("patients")
    if g is None or "id" not in g:
        out.append(Violation("patients/id", "missing"))
        return
    ids = [_text(x) for x in g["id"][()]]
    if len(set(ids)) != len(ids):
        out.append(Violation("patients/id", "duplicate ids"))
    for name, d in g.items():
        if d.shape != (len(ids),):
            out.append(Violation(f"patients/{name}", f"length {d.shape}, expected ({len(ids)},)"))
        if d.dtype != np.float64 and h5py.check_string_dtype(d.dtype) is None:
            out.append(Violation(f"patients/{name}", f"dtype {d.dtype}, expected float64 or a string"))
    if patients is not None:
        unknown = sorted(set(patients) - set(ids))
        if unknown:
            out.append(Violation("meta/patient", f"{len(unknown)} patient(s) not in patients/id: "
                                                 f"{', '.join(unknown[:MAX_LISTED])}"))


def _check_splits(f: h5py.File, n: int, patients: np.ndarray | None, out: list[Violation]) -> None:
    g = f.get("splits")
    if g is None:
        out.append(Violation("splits", "missing group"))
        return
    for a in ("method", "seed", "ratios"):
        if a not in g.attrs:
            out.append(Violation(f"splits.attrs/{a}", "missing"))
    members: dict[str, set[str]] = {}
    for name, d in g.items():
        idx = d[()]
        if d.dtype != np.int64 or idx.ndim != 1:
            out.append(Violation(f"splits/{name}", f"dtype {d.dtype} shape {d.shape}, expected 1-D int64"))
            continue
        if len(idx) and (idx.min() < 0 or idx.max() >= n):
            out.append(Violation(f"splits/{name}", f"indices outside 0-{n - 1}: "
                                                   f"{_listed(idx[(idx < 0) | (idx >= n)])}"))
            continue
        if np.any(np.diff(idx) <= 0):
            out.append(Violation(f"splits/{name}", "indices not sorted and unique"))
        if patients is not None:
            members[name] = set(patients[idx])
    names = sorted(members)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = sorted(members[a] & members[b])
            if both:
                out.append(Violation(f"splits/{a} & splits/{b}",
                                     f"{len(both)} patient(s) in both: {', '.join(both[:MAX_LISTED])}"))


def validate_store(path: str | Path) -> list[Violation]:
    """Every violation of the store contract found in ``path`` (empty list: the store is valid)."""
    path = Path(path)
    try:
        regular_file(path, "store")  # a FIFO would block HDF5 forever
    except DatakitError as e:
        return [Violation(str(path), e.reason)]
    try:
        f = h5py.File(path, "r")
    except (OSError, FileNotFoundError) as e:
        return [Violation(str(path), f"cannot be opened as HDF5 ({e})")]
    out: list[Violation] = []
    with f:
        classes = _check_root(f, out)
        k = len(classes) if classes else None
        n = _check_arrays(f, k, out)
        if n is None:
            return out
        scribbled = None
        if k is not None and f["label_state"].shape == (n, k) and \
                f["masks"].shape[0] == n and f["scribbles"].shape[0] == n:
            scribbled = _check_samples(f, n, k, out)
        patients = _check_meta(f, n, out, scribbled)
        _check_patients(f, patients, out)
        _check_splits(f, n, patients, out)
    return out
