"""``datakit validate``: every clause of the contract (docs/store.md), every violation with its place.

The structural rules are :mod:`datakit.store.check`'s (the ones :class:`Store` runs on open); on top of
them this module scans the samples (finite images, label values, ``label_state`` against the labels)
and checks the tables against each other (``scribble_source`` against the scribbles, patients of
``meta/`` in ``patients/``, no patient in two splits). Reads h5py directly (not :class:`Store`) so
that a broken store is described, not refused. Sample arrays are streamed in chunks, so memory stays
bounded on any store size.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from datakit.constants import IGNORE
from datakit.errors import DatakitError
from datakit.safe_io import regular_file
from datakit.store.check import (
    MAX_LISTED,
    Violation,
    class_names,
    listed,
    sample_count,
    split_indices,
    structural_violations,
    text,
)

__all__ = ["Violation", "validate_store"]

CHUNK = 256


def _check_samples(f: h5py.File, n: int, k: int, out: list[Violation]) -> np.ndarray:
    """Stream images/masks/scribbles: finite images, label values, label_state consistency.

    Returns which samples' scribbles hold labelled pixels (for the scribble_source check), so the
    scribbles are read once."""
    ls_all = f["label_state"][()]
    bad_state = np.flatnonzero(~np.isin(ls_all, (-1, 0, 1)).all(axis=1))
    if len(bad_state):
        out.append(Violation(f"label_state[{listed(bad_state)}]", "values outside {-1, 0, 1}"))
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
                scribbled[start:stop] = (arr != IGNORE).any(axis=1)
            bad = (arr >= k) & (arr != IGNORE)
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
                known_full = (arr != IGNORE).all(axis=1)
        ls = ls_all[start:stop]
        for j, c in zip(*np.nonzero((ls == 0) & (present["masks"] | present["scribbles"])), strict=True):
            problems.setdefault(f"label_state 0 (absent) for class {c} whose pixels are labelled", []) \
                .append(start + j)
        for j, c in zip(*np.nonzero((ls == 1) & known_full[:, None] & ~present["masks"]), strict=True):
            problems.setdefault(f"label_state 1 (present) for class {c} missing from a complete mask", []) \
                .append(start + j)
    for problem, idx in problems.items():
        arr = np.unique(np.asarray(idx))
        out.append(Violation(f"{problem.split(':')[0].split(' ')[0]}[{listed(arr)}]", problem))
    return scribbled


def _check_affines(d: h5py.Dataset, out: list[Violation]) -> None:
    """``meta/source_affine`` (a datakit extension; its shape is a structural rule): finite, invertible
    affines whose last row is 0 0 0 1."""
    a = d[()]
    finite = np.isfinite(a).all(axis=(1, 2))
    bad = ~finite | ~np.all(a[:, 3] == (0, 0, 0, 1), axis=1)
    bad[finite] |= np.abs(np.linalg.det(a[finite, :3, :3])) < 1e-12
    if bad.any():
        out.append(Violation(f"meta/source_affine[{listed(np.flatnonzero(bad))}]",
                             "not an affine: non-finite, singular, or last row not 0 0 0 1"))


def _column(f: h5py.File, name: str, n: int, tail: tuple[int, ...] = ()) -> h5py.Dataset | None:
    """``name`` when it is a dataset of the right shape (else the structural check reported it)."""
    d = f.get(name)
    return d if isinstance(d, h5py.Dataset) and d.shape == (n, *tail) else None


def _check_meta_values(f: h5py.File, n: int, scribbled: np.ndarray | None, out: list[Violation]) -> np.ndarray | None:
    """Values of ``meta/``: affines, ``scribble_source`` (and against the scribbles), non-empty patient ids.
    Returns the patient of every sample when ``meta/patient`` is readable."""
    affine = _column(f, "meta/source_affine", n, (4, 4))
    if affine is not None and affine.dtype == np.float64:
        _check_affines(affine, out)
    source = _column(f, "meta/scribble_source", n)
    if source is not None:
        src = np.array([text(x) for x in source[()]])
        bad = np.flatnonzero(~(np.isin(src, ("manual", "none")) | np.char.startswith(src, "synthetic:")))
        if len(bad):
            out.append(Violation(f"meta/scribble_source[{listed(bad)}]",
                                 "expected 'manual', 'synthetic:<algorithm>' or 'none'"))
        none_with_pixels = np.flatnonzero(scribbled & (src == "none")) if scribbled is not None else []
        if len(none_with_pixels):
            out.append(Violation(f"meta/scribble_source[{listed(none_with_pixels)}]",
                                 "'none' but the scribble holds labelled pixels"))
    column = _column(f, "meta/patient", n)
    if column is None:
        return None
    patients = np.array([text(x) for x in column[()]], dtype=object)
    empty = np.flatnonzero(patients == "")
    if len(empty):
        out.append(Violation(f"meta/patient[{listed(empty)}]", "empty patient id"))
    return patients


def _check_patient_ids(f: h5py.File, patients: np.ndarray | None, out: list[Violation]) -> None:
    """``patients/id`` unique, and every sample's patient in it."""
    ids_column = f.get("patients/id")
    if not isinstance(ids_column, h5py.Dataset) or ids_column.ndim != 1:
        return
    ids = [text(x) for x in ids_column[()]]
    if len(set(ids)) != len(ids):
        out.append(Violation("patients/id", "duplicate ids"))
    if patients is not None:
        unknown = sorted(set(patients) - set(ids))
        if unknown:
            out.append(Violation("meta/patient", f"{len(unknown)} patient(s) not in patients/id: "
                                                 f"{', '.join(unknown[:MAX_LISTED])}"))


def _check_split_patients(splits: dict[str, np.ndarray], patients: np.ndarray | None,
                          out: list[Violation]) -> None:
    """No patient in two splits."""
    if patients is None:
        return
    members = {name: set(patients[idx]) for name, idx in splits.items()}
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
    with f:
        out = structural_violations(f)
        n = sample_count(f)
        if n is None:
            return out  # no sample count to check anything against
        scribbled = None
        classes = class_names(f)
        if classes and f["label_state"].shape == (n, len(classes)) and \
                f["masks"].shape[0] == n and f["scribbles"].shape[0] == n:
            scribbled = _check_samples(f, n, len(classes), out)
        patients = _check_meta_values(f, n, scribbled, out)
        _check_patient_ids(f, patients, out)
        _check_split_patients(split_indices(f, n, []), patients, out)
    return out
