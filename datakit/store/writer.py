"""Streaming store writer: samples appended in batches, memory bounded by a batch.

The file is built as ``.<name>.<pid>-<random>.tmp`` next to the destination and put in place only
when complete, so a failed or interrupted conversion leaves no store (or the previous one); without
``overwrite`` only if the destination is still free. The commands that write a store hold its
:func:`datakit.locks.exclusive_lock` for their whole run (:func:`writing`).

Chunks are one sample each and compressed with h5py's own filters (gzip, shuffle). Compression
is the costly part of writing, so :func:`encode_sample` can run in worker processes and the writer
stores the ready chunks with ``write_direct_chunk``: the file is byte-for-byte what h5py itself
would write, readable by any h5py.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from datakit import __version__
from datakit.constants import IGNORE
from datakit.errors import DatakitError, printable
from datakit.locks import exclusive_lock
from datakit.provenance import provenance
from datakit.safe_io import NO_SPACE, is_no_space, os_error, publish, remove_stale_temporaries, temporary_name
from datakit.sample import Sample
from datakit.store.chunks import ImageFormat, encode_labels
from datakit.store.contract import (
    LABEL_GZIP_LEVEL,
    META_COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
    STR,
    json_attr,
)

META_FLUSH = 4096  # metadata rows buffered between writes (a few hundred KB at most)

@dataclass
class EncodedSample:
    """A sample whose chunks are already compressed (cheap to pickle between processes)."""

    image: bytes
    mask: bytes
    scribble: bytes
    image_shape: tuple[int, ...]
    label_state: np.ndarray
    keypoints: np.ndarray | None
    meta: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


def encode_sample(s: Sample, image_format: ImageFormat = ImageFormat()) -> EncodedSample:
    image = np.asarray(s.image)
    if image.ndim != 3:
        raise ValueError(f"image must be (C, H, W), not {image.shape}")
    meta = {
        "dataset": s.dataset, "patient": s.patient, "frame": s.frame, "view": s.view,
        "slice": int(s.slice), "spacing": np.asarray(s.spacing, np.float32),
        "slice_spacing": float(s.slice_spacing), "source": s.source,
        "scribble_source": s.scribble_source,
    }
    try:
        encoded = image_format.encode(image)
    except DatakitError as e:  # name the source file (relative to the converted root)
        raise DatakitError(e.reason, s.source or None) from None
    return EncodedSample(
        image=encoded,
        mask=encode_labels(s.mask),
        scribble=encode_labels(s.scribble),
        image_shape=image.shape,
        label_state=np.asarray(s.label_state, np.int8),
        keypoints=None if s.keypoints is None else np.asarray(s.keypoints, np.float32),
        meta=meta,
        extra=dict(s.extra),
    )


def check_writable(path: Path, overwrite: bool) -> None:
    """An output file (store, PNG, JSON) can be written at ``path``: refuse an existing one without
    --overwrite, a directory, a missing folder, or a "folder" that is a file; before any work."""
    if (path.exists() or path.is_symlink()) and not overwrite:  # a dangling link too: never written through
        raise DatakitError("already exists; pass --overwrite to replace it", path)
    if path.is_dir():
        raise DatakitError("is a directory, expected a file path", path)
    if not path.parent.exists():
        raise DatakitError("output folder does not exist", path.parent)
    if not path.parent.is_dir():
        raise DatakitError("is not a folder", path.parent)


@contextmanager
def writing(path: Path, overwrite: bool) -> Iterator[None]:
    """The whole run of a command that writes the store ``path``: refused before any work if it cannot
    be written (:func:`check_writable`), then held under the store's exclusive lock (a second writer
    is refused, naming this process's PID), checked again once the lock is held."""
    check_writable(path, overwrite)
    with exclusive_lock(path, "store"):
        check_writable(path, overwrite)  # a writer that held the lock until now may have just finished
        yield


def patient_columns(rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows of patient facts (``id`` first) as the columns :meth:`StoreWriter.set_patients` takes;
    a key missing from a row is None there."""
    keys: list[str] = ["id"]
    for r in rows:
        keys += [k for k in r if k not in keys]
    return {k: [r.get(k) for r in rows] for k in keys}


def utf8(text: str) -> str:
    """Text the store can hold as UTF-8: bytes of a non-UTF-8 path (surrogate escapes) become ``\\xNN``."""
    return printable(text)


def _create_temporary(path: Path) -> tuple[Path, h5py.File]:
    """A new HDF5 file beside ``path`` under a unique hidden name, created exclusively (mode "x")
    with the usual permissions (0666 less the umask), so that the renamed store is an ordinary file.

    Not ``mkstemp`` followed by HDF5's "w": opening an existing file with O_TRUNC makes ext4
    (auto_da_alloc) write back the whole file when it is closed, 0.2 s per 300 MB, all in the
    critical path of a conversion.
    """
    for _ in range(100):
        tmp = path.parent / temporary_name(path)
        try:
            f = h5py.File(tmp, "x")
        except FileExistsError:
            continue
        except OSError as e:  # not a folder, read-only, no permission, full: no store can be written there
            tmp.unlink(missing_ok=True)
            if is_no_space(e):
                raise DatakitError(NO_SPACE, path) from None
            reason = os.strerror(e.errno) if e.errno else str(e)
            raise DatakitError(f"cannot create the store in this folder ({reason})", path.parent) from None
        return tmp, f
    raise DatakitError("cannot create a temporary file (100 names taken)", path.parent)


_UNCLOSABLE: list[Any] = []


def _never_release(writer: StoreWriter) -> None:
    """After a failed flush HDF5 can neither close nor free the file's objects (their destructors crash the
    process, HDF5 1.14). They are kept alive for the rest of the process, which ends soon after (the
    temporary itself is already removed), and skipped by the CLI's exit (fast_exit)."""
    import ctypes

    objects = [writer.f, writer.f.id, *writer._ds.values(), *(d.id for d in writer._ds.values())]
    for obj in objects:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj))
    _UNCLOSABLE.extend(objects)
    writer._ds = {}


class StoreWriter:
    """Write a store. Use as a context manager; on an exception the temporary file is removed.

    >>> with StoreWriter(out, classes=["background", "LV"], image_size=(224, 224)) as w:
    ...     w.append(samples)
    ...     w.set_patients({"id": ["p1"], "group": ["NOR"]})
    ...     w.set_splits({"train": [0, 1]}, method="random", seed=0, ratios=[1.0])
    """

    def __init__(
        self,
        path: str | Path,
        *,
        classes: Sequence[str],
        image_size: tuple[int, int],
        channels: int = 1,
        command: str = "",
        overwrite: bool = False,
        normalization: str = "",
        keypoint_names: Sequence[str] | None = None,
        attrs: dict[str, Any] | None = None,
        image_format: ImageFormat = ImageFormat(),
    ):
        self.image_format = image_format
        self.path = Path(path)
        self.overwrite = overwrite
        check_writable(self.path, overwrite)
        self.classes = list(classes)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.channels = int(channels)
        self.keypoint_names = list(keypoint_names) if keypoint_names else None
        self.n = 0
        self.patients_of_samples: list[str] = []
        self._extra_keys: list[str] | None = None
        remove_stale_temporaries(self.path)
        self.tmp_path, self.f = _create_temporary(self.path)
        self._meta_rows: list[dict[str, Any]] = []
        try:
            self._create(command, normalization, attrs or {})
        except BaseException as e:  # not yet a context manager: nothing else would remove the temporary
            self.abort()
            if isinstance(e, OSError):
                raise os_error(e, self.path) from None
            raise
        # every dataset written is held open until close: a dataset object dropped mid-write would be
        # closed (and flushed) in its destructor, where a full disk is an ignored error, then a crash
        self._ds = {name: self.f[name] for name in ("images", "masks", "scribbles", "label_state", "keypoints")
                    if name in self.f}
        self._ds.update({f"meta/{name}": self.f["meta"][name] for name in META_COLUMNS})

    # -- layout -------------------------------------------------------------------------------
    def _create(self, command: str, normalization: str, attrs: dict[str, Any]) -> None:
        f, (h, w), c, k = self.f, self.image_size, self.channels, len(self.classes)
        f.attrs["schema"] = SCHEMA
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["datakit_version"] = __version__
        f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        f.attrs["command"] = utf8(command)
        f.attrs["classes"] = json.dumps(self.classes)
        f.attrs["ignore_index"] = IGNORE
        f.attrs["image_size"] = np.array([h, w], np.int64)
        for key, value in attrs.items():
            self.set_attr(key, value)
        f.attrs["provenance"] = json.dumps(provenance())  # after attrs: a copied store's is replaced
        img = f.create_dataset("images", (0, c, h, w), maxshape=(None, c, h, w), chunks=(1, c, h, w),
                               **self.image_format.dataset_options())
        img.attrs["normalization"] = normalization
        for name in ("masks", "scribbles"):
            f.create_dataset(name, (0, h, w), np.uint8, maxshape=(None, h, w), chunks=(1, h, w),
                             compression="gzip", compression_opts=LABEL_GZIP_LEVEL, fillvalue=IGNORE)
        f.create_dataset("label_state", (0, k), np.int8, maxshape=(None, k), chunks=(4096, k))
        if self.keypoint_names:
            p = len(self.keypoint_names)
            kp = f.create_dataset("keypoints", (0, p, 3), np.float32, maxshape=(None, p, 3),
                                  chunks=(1024, p, 3), fillvalue=math.nan)
            kp.attrs["names"] = json.dumps(self.keypoint_names)
        meta = f.create_group("meta")
        for name, (dtype, tail) in META_COLUMNS.items():
            meta.create_dataset(name, (0, *tail), dtype, maxshape=(None, *tail), chunks=(4096, *tail))

    def set_attr(self, key: str, value: Any) -> None:
        """Root attribute; the contract's JSON attrs (``notes``, ``skipped``, ...; empty lists included),
        dicts and lists of non-numbers are stored as JSON text."""
        value = json_attr(key, value)
        if isinstance(value, dict) or (isinstance(value, (list, tuple)) and value
                                      and not all(isinstance(v, (int, float)) for v in value)):
            value = json.dumps(value)
        self.f.attrs[key] = utf8(value) if isinstance(value, str) else value

    # -- samples ------------------------------------------------------------------------------
    def append(self, samples: Iterable[Sample | EncodedSample]) -> None:
        batch = [s if isinstance(s, EncodedSample) else encode_sample(s, self.image_format)
                 for s in samples]
        if not batch:
            return
        n0, n = self.n, self.n + len(batch)
        (h, w), c, k = self.image_size, self.channels, len(self.classes)
        for s in batch:
            if tuple(s.image_shape) != (c, h, w):
                raise ValueError(f"sample image shape {s.image_shape} != store's {(c, h, w)}")
            if s.label_state.shape != (k,):
                raise ValueError(f"label_state shape {s.label_state.shape} != ({k},)")
        ds = self._ds
        for name in ("images", "masks", "scribbles", "label_state"):
            ds[name].resize(n, axis=0)
        images, masks, scribbles = ds["images"].id, ds["masks"].id, ds["scribbles"].id
        for i, s in enumerate(batch, start=n0):
            images.write_direct_chunk((i, 0, 0, 0), s.image)
            masks.write_direct_chunk((i, 0, 0), s.mask)
            scribbles.write_direct_chunk((i, 0, 0), s.scribble)
        ds["label_state"][n0:n] = np.stack([s.label_state for s in batch])
        if self.keypoint_names:
            p = len(self.keypoint_names)
            kp = np.full((len(batch), p, 3), np.nan, np.float32)
            for j, s in enumerate(batch):
                if s.keypoints is not None:
                    kp[j] = s.keypoints
            ds["keypoints"].resize(n, axis=0)
            ds["keypoints"][n0:n] = kp
        self._check_extra(batch)
        self._meta_rows += [{**s.meta, **s.extra} for s in batch]
        if len(self._meta_rows) >= META_FLUSH:
            self._flush_meta()
        self.patients_of_samples.extend(s.meta["patient"] for s in batch)
        self.n = n

    def _check_extra(self, batch: list[EncodedSample]) -> None:
        if self._extra_keys is None:
            self._extra_keys = sorted(batch[0].extra)
            for key in self._extra_keys:
                v = np.asarray(batch[0].extra[key])
                dtype = STR if v.dtype.kind in "US" else v.dtype
                self._ds[f"meta/{key}"] = self.f["meta"].create_dataset(
                    key, (0, *v.shape), dtype, maxshape=(None, *v.shape), chunks=(4096, *v.shape))
        for s in batch:
            if sorted(s.extra) != self._extra_keys:
                raise ValueError(f"extra meta keys {sorted(s.extra)} != {self._extra_keys}")

    def _flush_meta(self) -> None:
        """Metadata rows are written in blocks: per-row HDF5 writes would dominate the writer."""
        rows, self._meta_rows = self._meta_rows, []
        if not rows:
            return
        n0 = self._ds["meta/patient"].shape[0]
        for name in [*META_COLUMNS, *(self._extra_keys or [])]:
            d = self._ds[f"meta/{name}"]
            d.resize(n0 + len(rows), axis=0)
            d[n0:] = np.array([utf8(r[name]) for r in rows], object) if d.dtype == STR else \
                np.array([r[name] for r in rows], dtype=d.dtype)

    # -- tables -------------------------------------------------------------------------------
    def set_patients(self, columns: dict[str, Sequence[Any]]) -> None:
        """``patients/``: one column per key (``id`` required); numbers float64, text UTF-8.

        A column is numeric when its values are numbers (NaN marks a missing one, so a column missing
        for every patient stays numeric); ``None`` is missing in either kind.
        """
        if "id" not in columns:
            raise ValueError("patients table needs an 'id' column")
        g = self.f.require_group("patients")
        n = len(columns["id"])
        for key, values in columns.items():
            if len(values) != n:
                raise ValueError(f"patients column {key!r} has {len(values)} rows, expected {n}")
            if key in g:
                del g[key]
            if key != "id" and all(v is None or isinstance(v, (int, float, np.number)) for v in values) \
                    and not all(v is None for v in values):
                g.create_dataset(key, data=np.array([np.nan if v is None else v for v in values], np.float64))
            else:
                g.create_dataset(key, data=np.array(["" if v is None else utf8(str(v)) for v in values], object),
                                 dtype=STR)

    def set_splits(self, splits: dict[str, Sequence[int]], *, method: str, seed: int | None,
                   ratios: Sequence[float]) -> None:
        g = self.f.require_group("splits")
        for name in list(g):
            del g[name]
        for name, idx in splits.items():
            g.create_dataset(name, data=np.sort(np.asarray(idx, np.int64)))
        g.attrs["method"] = method
        g.attrs["seed"] = -1 if seed is None else int(seed)
        g.attrs["ratios"] = np.asarray(ratios, np.float64)

    # -- life cycle ---------------------------------------------------------------------------
    def commit(self) -> Path:
        """Close the file and put it in place: with ``overwrite``, atomically over a previous store;
        without, only if the path is still free (a store that appeared there meanwhile is refused,
        never replaced: :func:`datakit.safe_io.publish`)."""
        self._flush_meta()
        self.f.flush()  # a full disk fails here, as an exception, not inside HDF5's close
        self.f.close()
        try:
            publish(self.tmp_path, self.path, self.overwrite)
        finally:
            self.tmp_path.unlink(missing_ok=True)  # the temporary's name, once linked (or not) in place
        return self.path

    def abort(self) -> None:
        """Remove the temporary. It is emptied first: on a full disk that frees the space HDF5's final
        flush needs, so the close succeeds instead of failing in object destructors (or crashing)."""
        try:
            os.truncate(self.tmp_path, 0)
        except OSError:
            pass
        try:
            self.f.close()
        except (OSError, RuntimeError):  # the disk was full: HDF5 cannot close this file any more
            _never_release(self)
        finally:
            self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.commit()
            except (OSError, RuntimeError) as e:  # disk full while flushing or renaming: the previous store stays
                self.abort()
                if isinstance(e, OSError) or is_no_space(e):
                    raise os_error(e, self.path) from None
                raise
        else:
            self.abort()
            if isinstance(exc, OSError) or (isinstance(exc, RuntimeError) and is_no_space(exc)):
                raise os_error(exc, self.path) from None  # a write failed (disk full, I/O error): one line
