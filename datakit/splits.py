"""Patient-level train/valid/test splits, shared by every converter.

Methods (``--split``):
- ``random``: patients shuffled with ``--seed``, cut by ``--ratios``.
- ``stratified`` or ``stratified:<column>``: the same, but each stratum (e.g. ACDC Group) is spread
  over the splits in proportion to the ratios.
- ``kfold:K/FOLD``: K stratified folds of patients; fold FOLD (0-based) is ``valid``, the rest
  ``train`` (cross-validation, as nnU-Net does it); no ``test``.
- ``file:PATH``: a JSON object mapping split name -> list of patient ids (e.g.
  manifests/acdc_maag_split.json). Listed patients absent from the data are reported, not fatal.
- ``official``: the split the source itself ships (``official=`` mapping split name -> patient ids,
  given by the source's ``official()``), e.g. train/ valid/ test/ sub-folders.

Patients are never cut across splits. A ratio of 0 gives an empty split (present in the store, with no
samples); with at least as many patients as non-zero ratios, every other split gets one patient at least.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datakit.errors import DatakitError
from datakit.safe_io import read_json, regular_file

SPLIT_NAMES = ("train", "valid", "test")
RATIO_TOLERANCE = 1e-6  # --ratios must sum to 1 within this (0.7,0.15,0.15 sums to 0.9999999999999999)


def split_order(names: Iterable[str]) -> list[str]:
    """Split names in reading order: training splits first (``train``, then ``train_*`` such as MAAG's
    ``train_scribble`` / ``train_masks``), then ``valid``, ``test``, then any other, by name."""
    def key(name: str) -> tuple[int, str]:
        if name == "train":
            return 0, ""
        if name.startswith("train"):
            return 1, name
        return ({"valid": 2, "val": 2, "validation": 2, "test": 3}.get(name, 4), name)

    return sorted(names, key=key)


@dataclass
class SplitResult:
    patients: dict[str, list[str]]  # split name -> patient ids
    method: str
    seed: int | None
    ratios: list[float]
    notes: list[str] = field(default_factory=list)  # e.g. listed-but-absent patients

    def sample_indices(self, sample_patients: Sequence[str]) -> dict[str, np.ndarray]:
        where = {}
        for name, ids in self.patients.items():
            for pid in ids:
                where[pid] = name
        out: dict[str, list[int]] = {name: [] for name in self.patients}
        for i, pid in enumerate(sample_patients):
            if pid in where:
                out[where[pid]].append(i)
        return {name: np.asarray(idx, np.int64) for name, idx in out.items()}


def parse_ratios(text: str | Sequence[float]) -> list[float]:
    try:
        ratios = [float(x) for x in (text.split(",") if isinstance(text, str) else text)]
    except ValueError:
        raise DatakitError(f"--ratios must be comma-separated numbers, not {text!r}") from None
    if len(ratios) not in (2, 3) or any(not r >= 0 for r in ratios) or sum(ratios) <= 0:
        raise DatakitError(f"--ratios needs 2 or 3 non-negative numbers (train,valid[,test]), not {text!r}")
    total = sum(ratios)
    if abs(total - 1.0) > RATIO_TOLERANCE:  # a typo (0.8,0.3,0.1) must not be silently rescaled
        shown = text if isinstance(text, str) else ",".join(f"{r:g}" for r in ratios)
        raise DatakitError(f"--ratios {shown} sums to {total:g}, not 1: give fractions of the patients that add "
                           f"up to 1 (e.g. 0.7,0.15,0.15)")
    return [r / total for r in ratios]


def _quotas(n: int, ratios: Sequence[float]) -> list[int]:
    """Largest-remainder apportionment of n patients. A zero ratio gets none (an empty split); every
    non-zero one gets at least one when n allows (taken from the largest split)."""
    raw = [r * n for r in ratios]
    q = [int(np.floor(x)) for x in raw]
    wanted = [i for i, r in enumerate(ratios) if r > 0]
    for i in sorted(wanted, key=lambda i: raw[i] - q[i], reverse=True)[: n - sum(q)]:
        q[i] += 1
    if n >= len(wanted):
        for i in wanted:
            while q[i] == 0:
                donor = max(wanted, key=lambda j: q[j])
                q[donor] -= 1
                q[i] += 1
    return q


def _spread(order: Sequence[str], quotas: Sequence[int]) -> list[int]:
    """Assign positions of ``order`` to splits so that each split's share is spread evenly.

    Patients come grouped by stratum, so an even spread gives each stratum its proportional share.
    """
    n = len(order)
    assigned = [0] * len(quotas)
    labels = []
    for j in range(n):
        s = max(range(len(quotas)), key=lambda i: (quotas[i] * (j + 1) / n - assigned[i], -i))
        assigned[s] += 1
        labels.append(s)
    return labels


def _stratified_order(ids: Sequence[str], strata: Sequence[str] | None, rng: np.random.Generator) -> list[str]:
    ids = list(ids)
    if strata is None:
        return [ids[i] for i in rng.permutation(len(ids))]
    groups: dict[str, list[str]] = {}
    for pid, s in zip(ids, strata, strict=True):
        groups.setdefault(str(s), []).append(pid)
    order = []
    for key in sorted(groups):
        members = groups[key]
        order += [members[i] for i in rng.permutation(len(members))]
    return order


def _normalise_id(x: object) -> str:
    return str(x).strip()


def _match_ids(listed: Sequence[object], known: Sequence[str]) -> tuple[list[str], list[str]]:
    """Map listed ids to known ones: exact, else by number (``4`` matches ``patient004``)."""
    by_number: dict[int, str] = {}
    for k in known:
        m = re.search(r"(\d+)$", k)
        if m:
            by_number.setdefault(int(m.group(1)), k)
    known_set = set(known)
    found, missing = [], []
    for x in listed:
        key = _normalise_id(x)
        if key in known_set:
            found.append(key)
        elif re.fullmatch(r"\d+", key) and int(key) in by_number:
            found.append(by_number[int(key)])
        else:
            m = re.search(r"(\d+)$", key)
            if m and int(m.group(1)) in by_number and not known_set & {key}:
                found.append(by_number[int(m.group(1))])
            else:
                missing.append(key)
    return found, missing


def split_from_file(path: str | Path, patient_ids: Sequence[str]) -> SplitResult:
    path = Path(path)
    spec = read_json(path, "split file")  # regular files only; invalid or deeply nested JSON named
    if not isinstance(spec, dict) or not all(isinstance(v, list) for v in spec.values()):
        raise DatakitError("expected a JSON object mapping split name -> list of patient ids", path)
    return split_from_mapping(spec, patient_ids, f"file:{path.name}", f"split file {path.name}", path)


def split_from_mapping(spec: dict[str, list], patient_ids: Sequence[str], method: str, origin: str,
                       where: str | Path) -> SplitResult:
    """A ready-made split (split name -> patient ids) checked against the converted patients."""
    out: dict[str, list[str]] = {}
    notes: list[str] = []
    seen: dict[str, str] = {}
    for name, listed in spec.items():
        found, missing = _match_ids(listed, patient_ids)
        for pid in found:
            if pid in seen:
                raise DatakitError(f"patient {pid} is listed in both {seen[pid]!r} and {name!r}",
                                   f"{where}#{name}")
            seen[pid] = name
        out[name] = found
        if missing:
            notes.append(f"{origin}: {len(missing)} patient(s) of {name!r} absent from the "
                         f"data: {', '.join(missing)}")
    unlisted = sorted(set(patient_ids) - set(seen))
    if unlisted:
        notes.append(f"{origin}: {len(unlisted)} patient(s) in no split: "
                     f"{', '.join(unlisted[:10])}{' ...' if len(unlisted) > 10 else ''}")
    return SplitResult(out, method, None, [], notes)


def _kfold(spec: str) -> tuple[int, int]:
    """(K, FOLD) of ``kfold:K/FOLD``."""
    m = re.fullmatch(r"kfold:(\d+)/(\d+)", spec)
    if not m or not (int(m.group(1)) >= 2 and 0 <= int(m.group(2)) < int(m.group(1))):
        raise DatakitError(f"--split {spec!r}: expected kfold:K/FOLD with K >= 2 and 0 <= FOLD < K")
    return int(m.group(1)), int(m.group(2))


def check_split_spec(spec: str) -> None:
    """Refuse a malformed ``--split`` before any conversion work (make_splits runs only at the end)."""
    if spec in ("random", "stratified", "official") or spec.startswith("stratified:"):
        return
    if spec.startswith("kfold:"):
        _kfold(spec)
        return
    if spec.startswith("file:"):
        regular_file(Path(spec[5:]), "split file")  # before any work: missing, a folder or a FIFO
        return
    raise DatakitError(f"unknown --split {spec!r}; choose random, stratified[:column], "
                       f"kfold:K/FOLD, file:PATH or official")


def make_splits(
    spec: str,
    patient_ids: Sequence[str],
    *,
    strata: dict[str, Sequence[str]] | None = None,
    default_column: str | None = None,
    ratios: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    official: dict[str, list[str]] | None = None,
    official_name: str = "source",
) -> SplitResult:
    """Split ``patient_ids`` by ``spec`` (see module docstring).

    ``strata`` maps column name -> one value per patient (the ``patients/`` table);
    ``default_column`` is the column plain ``stratified`` uses; ``official`` is the source's own
    split (``--split official``), recorded as method ``official:<official_name>``.
    """
    check_split_spec(spec)
    ids = list(patient_ids)
    ratios = list(ratios)
    rng = np.random.default_rng(seed)
    names = list(SPLIT_NAMES[: len(ratios)])
    if spec.startswith("file:"):
        return split_from_file(spec[5:], ids)
    if spec == "official":
        if official is None:
            raise DatakitError("this dataset ships no official split; use random, stratified[:column], "
                               "kfold:K/FOLD or file:PATH")
        return split_from_mapping(official, ids, f"official:{official_name}", f"official split ({official_name})",
                                  official_name)
    if spec == "random":
        order, method = _stratified_order(ids, None, rng), "random"
    elif spec == "stratified" or spec.startswith("stratified:"):
        column = spec.partition(":")[2] or default_column
        if column is None:
            raise DatakitError("this dataset has no default stratification column; use stratified:<column>")
        if strata is None or column not in strata:
            raise DatakitError(f"cannot stratify on {column!r}: patient columns are "
                               f"{sorted(strata or {}) or 'none'}")
        order, method = _stratified_order(ids, strata[column], rng), f"stratified:{column}"
    else:  # kfold:K/FOLD (check_split_spec refused any other spelling)
        k, fold = _kfold(spec)
        column = default_column if strata and default_column in (strata or {}) else None
        order = _stratified_order(ids, strata[column] if column else None, rng)
        labels = _spread(order, _quotas(len(order), [1 / k] * k))
        out = {"train": [p for p, f in zip(order, labels, strict=True) if f != fold],
               "valid": [p for p, f in zip(order, labels, strict=True) if f == fold]}
        return SplitResult({n: sorted(v) for n, v in out.items()}, f"kfold:{k}/{fold}", seed,
                           [1 - 1 / k, 1 / k])
    labels = _spread(order, _quotas(len(order), ratios))
    out = {name: sorted(p for p, lab in zip(order, labels, strict=True) if lab == i)
           for i, name in enumerate(names)}
    return SplitResult(out, method, seed, ratios)
