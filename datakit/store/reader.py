"""Store reader: O(1) random access to one sample, chunked streaming, splits and tables.

The HDF5 handle is a :class:`~datakit.store.handle.LazyFile`: opened lazily and re-opened after a fork
or unpickling, so each DataLoader worker holds its own (h5py handles must not cross processes).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from datakit.errors import DatakitError
from datakit.safe_io import regular_file
from datakit.store.check import check_structure
from datakit.store.contract import json_attr
from datakit.store.handle import LazyFile


def _decode(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "OS":
        return np.array([x.decode() if isinstance(x, bytes) else str(x) for x in a], dtype=object)
    return a


class Store:
    """A datakit store opened for reading (docs/store.md): one sample in O(1), arrays in chunks, the
    splits and the tables. Opening runs the contract's structural check (a broken or newer store is
    refused with its first violations, naming the file); no sample array is read until asked for.

    Args:
        path: the store file (``.h5``). Only regular files are opened.

    Example:
        >>> from datakit.store import Store
        >>> with Store("acdc.h5") as store:  # the README's store: real ACDC with MAAG's split
        ...     print(store.classes, sorted(store.splits))
        ...     sample = store[0]  # a dict: arrays (one chunk each) and the sample's meta/ row
        ...     print(sample["image"].shape, sample["image"].dtype, sample["mask"].dtype, sample["patient"])
        ...     for rows, masks in store.iter_chunks("masks", store.indices("valid"), chunk=64):
        ...         pass  # (row indices, (len(rows), H, W) uint8): memory bounded by the chunk
        ['background', 'RV', 'MYO', 'LV'] ['test', 'train_masks', 'train_scribble', 'valid']
        (1, 224, 224) float32 uint8 patient001

    The handle is opened lazily in the process that reads and reopened after a fork or unpickling
    (:class:`~datakit.store.handle.LazyFile`), so a Store can be handed to DataLoader workers.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise DatakitError("no such store file", self.path)
        regular_file(self.path, "store")  # a FIFO would block HDF5
        self._h5 = LazyFile(self.path)  # reopened in each process (DataLoader workers, unpickled copies)
        try:
            check_structure(self.file, self.path)  # the contract's structural rules (datakit.store.check)
        except OSError as e:
            self.close()
            raise DatakitError(f"not a readable HDF5 file ({e})", self.path) from None
        except DatakitError:
            self.close()
            raise

    # -- handle ---------------------------------------------------------------------------------
    @property
    def file(self) -> h5py.File:
        """This process's h5py handle (read-only)."""
        return self._h5.file

    def close(self) -> None:
        """Close this process's handle; a later read opens it again."""
        self._h5.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- attributes -----------------------------------------------------------------------------
    @cached_property
    def attrs(self) -> dict[str, Any]:
        """Root attributes; the JSON ones (``notes``, ``skipped``, ...) always as JSON text, also in
        stores that hold an empty list as an empty array (:func:`datakit.store.contract.json_attr`)."""
        return {k: json_attr(k, v.decode() if isinstance(v, bytes) else v) for k, v in self.file.attrs.items()}

    @cached_property
    def classes(self) -> list[str]:
        return json.loads(self.attrs["classes"])

    @property
    def image_size(self) -> tuple[int, int]:
        h, w = self.attrs["image_size"]
        return int(h), int(w)

    @property
    def channels(self) -> int:
        return int(self.file["images"].shape[1])

    def __len__(self) -> int:
        return int(self.file["images"].shape[0])

    @property
    def has_keypoints(self) -> bool:
        return "keypoints" in self.file

    @cached_property
    def keypoint_names(self) -> list[str]:
        return json.loads(self.file["keypoints"].attrs["names"]) if self.has_keypoints else []

    # -- tables (small; read once) --------------------------------------------------------------
    @cached_property
    def meta(self) -> dict[str, np.ndarray]:
        return {k: _decode(d[()]) for k, d in self.file["meta"].items()}

    @cached_property
    def patients(self) -> dict[str, np.ndarray]:
        g = self.file.get("patients")
        return {k: _decode(d[()]) for k, d in g.items()} if g is not None else {}

    @cached_property
    def _rows(self) -> dict[str, np.ndarray]:
        """The small per-sample tables (label states, keypoints), read once as ``datakit.torch`` does."""
        names = ("label_state", "keypoints") if self.has_keypoints else ("label_state",)
        return {name: self.file[name][()] for name in names}

    @property
    def label_state(self) -> np.ndarray:
        """(N, K) int8: per sample and class, 1 present, 0 absent, -1 unknown; read once."""
        return self._rows["label_state"]

    @cached_property
    def splits(self) -> dict[str, np.ndarray]:
        g = self.file.get("splits")
        return {k: d[()].astype(np.int64) for k, d in g.items()} if g is not None else {}

    @cached_property
    def split_attrs(self) -> dict[str, Any]:
        g = self.file.get("splits")
        return dict(g.attrs) if g is not None else {}

    def indices(self, split: str | None) -> np.ndarray:
        """Sample indices of a split; ``None`` or ``"all"`` is every sample."""
        if split in (None, "all"):
            return np.arange(len(self))
        if split not in self.splits:
            raise DatakitError(f"no split {split!r}; the store has {sorted(self.splits) or 'none'}",
                               self.path)
        return self.splits[split]

    # -- samples --------------------------------------------------------------------------------
    def sample(self, i: int) -> dict[str, Any]:
        """One sample: arrays read from one chunk each (:class:`ChunkReader`), plus its metadata row."""
        images = self._h5.reader("images")
        n = images.d.shape[0]
        if not -n <= int(i) < n:
            raise IndexError(f"sample {i} out of range for a store of {n} samples")
        i = int(i) % n
        out: dict[str, Any] = {
            "index": i,
            "image": images.read(i).astype(np.float32, copy=False),  # float16 stores: readers cast
            "mask": self._h5.reader("masks").read(i),
            "scribble": self._h5.reader("scribbles").read(i),
            "label_state": self._rows["label_state"][i].copy(),
        }
        if "keypoints" in self._rows:
            out["keypoints"] = self._rows["keypoints"][i].copy()
        for k, v in self.meta.items():
            out[k] = v[i]
        return out

    __getitem__ = sample

    def iter_chunks(self, name: str, indices: np.ndarray | None = None,
                    chunk: int = 256) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(indices, array)`` blocks of a sample dataset, in order; memory bounded by ``chunk``.

        A contiguous block is one slice read; any other block is read sample by sample with
        :class:`ChunkReader` (one ``read_direct_chunk`` each), several times faster than h5py's
        point selection ``d[part]`` for a split's scattered samples.
        """
        reader = self._h5.reader(name)
        d = reader.d
        idx = np.arange(d.shape[0]) if indices is None else np.sort(np.asarray(indices))
        for start in range(0, len(idx), chunk):
            part = idx[start:start + chunk]
            if len(part) and part[-1] - part[0] + 1 == len(part):  # contiguous: one slice read
                yield part, d[part[0]:part[-1] + 1]
            elif reader.direct:
                yield part, np.stack([reader.read(int(i)) for i in part])
            else:
                yield part, d[part]

    def rows(self, name: str, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Samples ``indices`` of a sample dataset, stacked in the order given (repeats allowed), read in
        one :meth:`iter_chunks` block; as stored (float16 images stay float16)."""
        order, inverse = np.unique(np.asarray(indices, np.int64), return_inverse=True)
        if not len(order):
            return np.zeros((0, *self.file[name].shape[1:]), self.file[name].dtype)
        (_, block), = self.iter_chunks(name, order, chunk=len(order))
        return block[inverse.reshape(-1)]
