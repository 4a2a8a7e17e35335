"""Merge several stores into one: classes unified by name, labels remapped, streamed in chunks.

Rules (docs/merge.md):
- every input has the same image size and channel count;
- classes are unified by name in order of first appearance (``classes`` overrides: the final list,
  ``new=old|other`` entries rename); masks, scribbles and label_state columns are remapped; a class
  an input never annotated is "unknown" (-1) in that input's label_state, not "absent";
- ``meta/`` is copied (``meta/dataset`` keeps each sample's origin); extra meta columns are kept
  when every input has them;
- patient ids that occur in two inputs get every id prefixed ``<dataset>/`` (in ``meta/patient``
  and ``patients/id``), so no patient is ever cut across splits; ``patients/dataset`` names the origin;
- splits are merged by name.
Image chunks are copied compressed as they are when the filters match (no decode, no re-encode).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datakit.constants import IGNORE
from datakit.errors import DatakitError
from datakit.safe_io import same_file
from datakit.store.check import check_label_values
from datakit.store.chunks import ImageFormat, encode_labels
from datakit.store.contract import META_COLUMNS
from datakit.store.reader import Store
from datakit.store.writer import (
    EncodedSample,
    StoreWriter,
    patient_columns,
    writing,
)

CHUNK = 64  # samples read per step: memory is bounded by this, not by the store size


@dataclass
class MergeReport:
    out: Path
    samples: int
    patients: int
    classes: list[str]
    class_maps: list[tuple[str, list[tuple[str, int, int]]]]  # per input: (class, old, new)
    prefixed: bool
    notes: list[str]

    def class_map_text(self) -> str:
        lines = [f"classes: {', '.join(f'{i} {c}' for i, c in enumerate(self.classes))}"]
        for path, rows in self.class_maps:
            lines.append(f"  {path}: " + ", ".join(f"{c} {old}->{new}" for c, old, new in rows))
        return "\n".join(lines)

    def summary(self) -> str:
        return (f"wrote {self.out}: {self.samples} samples, {self.patients} patients, "
                f"{len(self.classes)} classes{' (patient ids prefixed by dataset)' if self.prefixed else ''}")


def parse_class_spec(spec: Sequence[str]) -> list[tuple[str, set[str]]]:
    """``["background=bg", "lung"]`` -> [("background", {"background", "bg"}), ("lung", {"lung"})]."""
    out = []
    for entry in spec:
        name, _, aliases = entry.partition("=")
        name = name.strip()
        if not name:
            raise DatakitError(f"--classes entry {entry!r} has no class name")
        out.append((name, {name, *(a.strip() for a in aliases.split("|") if a.strip())}))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise DatakitError(f"--classes names a class twice: {names}")
    return out


def unify_classes(stores: Sequence[Store], spec: Sequence[str] | None) -> tuple[list[str], list[np.ndarray]]:
    """Merged class list and, per store, old label value -> new label value."""
    if spec:
        entries = parse_class_spec(spec)
        classes = [n for n, _ in entries]
    else:
        classes = []
        for s in stores:
            classes += [c for c in s.classes if c not in classes]
        entries = [(c, {c}) for c in classes]
    if len(classes) > IGNORE:
        raise DatakitError(f"{len(classes)} merged classes; at most {IGNORE} fit the store's uint8 labels")
    maps = []
    for s in stores:
        m = np.empty(len(s.classes), np.int64)
        for old, c in enumerate(s.classes):
            hits = [i for i, (_, aliases) in enumerate(entries) if c in aliases]
            if not hits:
                raise DatakitError(f"class {c!r} is not in --classes {','.join(classes)} "
                                   f"(rename with NEW=OLD, e.g. {classes[0]}={c})", s.path)
            if len(hits) > 1:
                raise DatakitError(f"class {c!r} matches several --classes entries", s.path)
            m[old] = hits[0]
        if len(set(m.tolist())) != len(m):
            raise DatakitError("two classes of this store map to the same merged class", s.path)
        maps.append(m)
    return classes, maps


def _labels(stores: Sequence[Store]) -> list[str]:
    """A short, distinct name per input: its dataset name, else its file name."""
    def first(s: Store) -> str:
        d = sorted(set(s.meta["dataset"].tolist()))
        return d[0] if len(d) == 1 else str(s.attrs.get("source_dataset") or s.path.stem)

    labels = [first(s) for s in stores]
    # only the inputs whose names clash fall back to their file names (then numbered if still equal)
    clash = {lab for lab in labels if labels.count(lab) > 1}
    labels = [s.path.stem if lab in clash else lab for s, lab in zip(stores, labels, strict=True)]
    clash = {lab for lab in labels if labels.count(lab) > 1}
    return [f"{lab}{i}" if lab in clash else lab for i, lab in enumerate(labels)]


def _raw_ok(d: Any, chunks: tuple[int, ...], shuffle: bool) -> bool:
    """Whether a label dataset's compressed chunks can be copied byte for byte into a new store."""
    return (d.chunks == chunks and d.compression == "gzip" and bool(d.shuffle) == shuffle
            and not d.fletcher32 and d.scaleoffset is None)


def _chunks(d: Any, start: int, stop: int, raw: bool, encode: Callable[[np.ndarray], bytes],
            lut: np.ndarray | None = None) -> list[bytes]:
    if raw:
        out = []
        for i in range(start, stop):
            mask, data = d.id.read_direct_chunk((i,) + (0,) * (d.ndim - 1))
            if mask != 0:  # a filter was skipped for this chunk: decode it instead
                return [encode(a) for a in _decoded(d, start, stop, lut)]
            out.append(bytes(data))
        return out
    return [encode(a) for a in _decoded(d, start, stop, lut)]


def _decoded(d: Any, start: int, stop: int, lut: np.ndarray | None) -> np.ndarray:
    a = d[start:stop]
    return lut[a] if lut is not None else a


def _patient_rows(s: Store, label: str, prefix: str) -> list[dict[str, Any]]:
    table = s.patients
    ids = table.get("id")
    if ids is None:  # no patients table: the ids in meta, no facts
        ids = np.array(sorted(set(s.meta["patient"].tolist())), object)
        table = {"id": ids}
    rows = []
    for r in range(len(ids)):
        row: dict[str, Any] = {"id": prefix + str(ids[r]), "dataset": label}
        for k, col in table.items():
            if k in ("id", "dataset"):
                continue
            v = col[r]
            if isinstance(v, (float, np.floating)):
                v = None if math.isnan(float(v)) else float(v)
            elif isinstance(v, (int, np.integer)):
                v = float(v)
            row[k] = v
        rows.append(row)
    return rows


def _agree(values: list[Any]) -> bool:
    return all(json.dumps(v, default=str) == json.dumps(values[0], default=str) for v in values)


def merge_stores(paths: Sequence[str | Path], out: str | Path, *, classes: Sequence[str] | None = None,
                 overwrite: bool = False, command: str = "", chunk: int = CHUNK,
                 copy_compressed: bool = True) -> MergeReport:
    """Merge the stores at ``paths`` into ``out`` (see the module docstring).

    ``copy_compressed=False`` decodes and re-encodes every chunk (for comparison in benchmarks).
    """
    out = Path(out)
    paths = [Path(p) for p in paths]
    if not paths:
        raise DatakitError("give at least one store to merge")
    check_distinct(paths, out)
    with writing(out, overwrite):
        return _merge(paths, out, classes, overwrite, command, chunk, copy_compressed)


def check_distinct(paths: Sequence[Path], out: Path) -> None:
    """Every input a different file, and ``out`` none of them, compared by identity (device and inode):
    a hard link or a symbolic link is the same store under another name, and merging it would take
    every sample twice."""
    for p in paths:
        if same_file(p, out):
            raise DatakitError(f"--out is one of the inputs ({p}); write the merge to a new file", out)
    for i, a in enumerate(paths):
        for b in paths[i + 1:]:
            if same_file(a, b):
                how = "given twice" if a == b else "one file under two names (a hard or symbolic link)"
                raise DatakitError(f"{a} and {b} are the same store, {how}; give each input once")


def _merge(paths: list[Path], out: Path, classes: Sequence[str] | None, overwrite: bool, command: str, chunk: int,
           copy_compressed: bool) -> MergeReport:
    stores = [Store(p) for p in paths]  # each through the structural check (newer schema_version refused)
    for s in stores:  # label values outside an input's classes would be remapped to nonsense: refused first
        check_label_values(s)
    first = stores[0]
    for s in stores[1:]:
        if s.image_size != first.image_size:
            raise DatakitError(f"image size {s.image_size[0]}x{s.image_size[1]} differs from {first.path.name}'s "
                               f"{first.image_size[0]}x{first.image_size[1]} (convert both with the same --size)",
                               s.path)
        if s.channels != first.channels:
            raise DatakitError(f"{s.channels} image channel(s), {first.path.name} has {first.channels}", s.path)
    merged, maps = unify_classes(stores, classes)
    labels = _labels(stores)
    seen: dict[str, int] = {}
    prefixed = False
    for i, s in enumerate(stores):
        for pid in set(s.meta["patient"].tolist()):
            if seen.setdefault(pid, i) != i:
                prefixed = True
    prefixes = [f"{lab}/" if prefixed else "" for lab in labels]
    notes: list[str] = []
    extra_keys = _common_extra(stores, notes)
    kp_names: list[str] = []
    for s in stores:
        kp_names += [n for n in s.keypoint_names if n not in kp_names]
    norms = [str(s.file["images"].attrs.get("normalization", "")) for s in stores]
    normalization = norms[0] if _agree(norms) else "mixed: " + "; ".join(
        f"{lab} {n}" for lab, n in zip(labels, norms, strict=True))
    c, (h, w) = first.channels, first.image_size
    rows: list[dict[str, Any]] = []
    splits: dict[str, list[np.ndarray]] = {}
    # keep the inputs' image storage (the first's when they differ): chunks then copy verbatim; but
    # float16 only when every input is float16 (a float32 input is never rounded)
    fmt = ImageFormat.like(first.file["images"])
    if any(s.file["images"].dtype != np.float16 for s in stores):
        fmt = ImageFormat("float32", fmt.compression)
    with StoreWriter(out, classes=merged, image_size=(h, w), channels=c, command=command, overwrite=overwrite,
                     normalization=normalization, keypoint_names=kp_names or None,
                     attrs={"source_dataset": "merged"}, image_format=fmt) as writer:
        for s, m, lab, prefix in zip(stores, maps, labels, prefixes, strict=True):
            offset = writer.n
            lut = np.full(256, IGNORE, np.uint8)
            lut[: len(m)] = m
            _copy_samples(s, writer, lut, m, len(merged), prefix, extra_keys, kp_names, chunk, copy_compressed)
            rows += _patient_rows(s, lab, prefix)
            for name, idx in s.splits.items():
                splits.setdefault(name, []).append(idx + offset)
            if not s.splits:
                notes.append(f"{s.path.name} has no splits: its samples are in none")
        ids = [r["id"] for r in rows]
        if len(set(ids)) != len(ids):
            raise DatakitError("patient ids still collide after prefixing by dataset", out)
        writer.set_patients(patient_columns(rows))
        methods = [str(s.split_attrs.get("method", "")) for s in stores]
        seeds = [int(s.split_attrs.get("seed", -1)) for s in stores]
        ratios = [np.asarray(s.split_attrs.get("ratios", []), float).tolist() for s in stores]
        writer.set_splits({k: np.concatenate(v) for k, v in splits.items()},
                          method=methods[0] if _agree(methods) else "merged: " + "; ".join(
                              f"{lab} {mt}" for lab, mt in zip(labels, methods, strict=True)),
                          seed=seeds[0] if _agree(seeds) and seeds[0] >= 0 else None,
                          ratios=ratios[0] if _agree(ratios) else [])
        class_maps = [(str(s.path), [(cl, old, int(m[old])) for old, cl in enumerate(s.classes)])
                      for s, m in zip(stores, maps, strict=True)]
        writer.set_attr("merged_from", [
            {"path": str(s.path), "dataset": lab, "samples": len(s), "classes": s.classes,
             "class_map": [int(v) for v in m], "patient_prefix": prefix, "command": str(s.attrs.get("command", ""))}
            for s, lab, m, prefix in zip(stores, labels, maps, prefixes, strict=True)])
        writer.set_attr("notes", notes)
        n = writer.n
    for s in stores:
        s.close()
    return MergeReport(out, n, len(rows), merged, class_maps, prefixed, notes)


def _common_extra(stores: Sequence[Store], notes: list[str]) -> list[str]:
    def shape(s: Store, k: str) -> tuple[str, tuple[int, ...]]:
        d = s.file["meta"][k]
        return d.dtype.kind, d.shape[1:]

    extra = [sorted(set(s.file["meta"]) - set(META_COLUMNS)) for s in stores]
    common = [k for k in extra[0] if all(k in e for e in extra)
              and all(shape(s, k) == shape(stores[0], k) for s in stores)]
    dropped = sorted({k for e in extra for k in e} - set(common))
    if dropped:
        notes.append(f"meta columns not in every input were dropped: {', '.join(dropped)}")
    return common


def _copy_samples(s: Store, writer: StoreWriter, lut: np.ndarray, class_map: np.ndarray, k: int, prefix: str,
                  extra_keys: list[str], kp_names: list[str], chunk: int, copy_compressed: bool) -> None:
    f = s.file
    c, (h, w) = s.channels, s.image_size
    identity = np.array_equal(class_map, np.arange(len(class_map)))
    raw_img = copy_compressed and f["images"].chunks == (1, c, h, w) \
        and ImageFormat.of(f["images"]) == writer.image_format
    raw_lab = copy_compressed and identity and all(_raw_ok(f[d], (1, h, w), False) for d in ("masks", "scribbles"))
    meta = s.meta
    extra = {key: f["meta"][key][()] for key in extra_keys}
    own_kp = s.keypoint_names

    enc_image, enc_label = writer.image_format.encode, encode_labels

    for start in range(0, len(s), chunk):
        stop = min(start + chunk, len(s))
        images = _chunks(f["images"], start, stop, raw_img, enc_image)
        masks = _chunks(f["masks"], start, stop, raw_lab, enc_label, None if identity else lut)
        scribbles = _chunks(f["scribbles"], start, stop, raw_lab, enc_label, None if identity else lut)
        states = np.full((stop - start, k), -1, np.int8)  # classes this input never annotated: unknown
        states[:, class_map] = f["label_state"][start:stop]
        kps = None
        if kp_names:
            kps = np.full((stop - start, len(kp_names), 3), np.nan, np.float32)
            kps[:, :, 2] = -1  # not annotated in this input: visibility unknown
            if own_kp:
                kps[:, [kp_names.index(n) for n in own_kp]] = f["keypoints"][start:stop]
        batch = []
        for j, i in enumerate(range(start, stop)):
            row = {name: meta[name][i] for name in META_COLUMNS}
            row["patient"] = prefix + str(row["patient"])
            batch.append(EncodedSample(
                image=images[j], mask=masks[j], scribble=scribbles[j], image_shape=(c, h, w),
                label_state=states[j], keypoints=None if kps is None else kps[j], meta=row,
                extra={key: extra[key][i] for key in extra_keys}))
        writer.append(batch)
