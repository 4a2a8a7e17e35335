"""A PyTorch Dataset over a datakit store, for your own training code (:class:`StoreDataset`; its
docstring has a runnable example).

Each item is a dict:

==================  =========================  ===============================================
key                 type                       meaning
==================  =========================  ===============================================
``image``           float32 tensor (C, H, W)   the normalised image
``mask``            uint8 tensor (H, W)        class indices, 255 (``IGNORE``) unknown
``scribble``        uint8 tensor (H, W)        class indices, 255 unlabelled
``label_state``     int8 tensor (K,)           1 present, 0 absent, -1 unknown, per class
``keypoints``       float32 tensor (P, 3)      only for stores with keypoints (Unity)
``index``           int                        the sample's row in the store
``dataset``,        str                        ``meta/`` of the sample (``slice`` -1 for 2D
``patient``,                                   sources); ``spacing`` is a float32 tensor (2,)
``frame``, ``view``,                           in mm, NaN when unknown
``slice``,
``spacing``,
``slice_spacing``
==================  =========================  ===============================================

``mask`` and ``scribble`` stay uint8 as stored (loader workers pass 8x less data than int64, which
doubles their throughput); ``F.cross_entropy(logits, batch["mask"].long(), ignore_index=255)`` takes
them. ``transform`` (any callable taking and returning that dict, e.g. a MONAI dictionary transform or
your own augmentation) runs on every item, in the worker.

The HDF5 file is opened lazily, by whichever process reads first, and reopened in each DataLoader
worker (never shared across a fork; the dataset pickles without a handle), so ``num_workers > 0`` is
safe. The small per-sample tables (metadata, label states, keypoints) are read once, when the
dataset is made; the arrays are read one chunk per sample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from datakit.constants import IGNORE
from datakit.errors import DatakitError
from datakit.store.handle import LazyFile
from datakit.store.reader import Store

__all__ = ["IGNORE", "StoreDataset"]  # IGNORE: datakit.constants's, for ignore_index=

META_KEYS = ("dataset", "patient", "frame", "view", "slice", "spacing", "slice_spacing")


class StoreDataset(Dataset):
    """Map-style dataset of the samples of a store: a split, an explicit index list, or all of them.
    Items are the dicts of the module's table.

    Args:
        store: path of the ``.h5`` store.
        split: a split the store has (``"train"``, ``"valid"``, MAAG's ``"train_scribble"``, ...), or
            ``None`` / ``"all"`` for every sample. An unknown name is refused, listing the store's.
        indices: store rows to use instead of a split, in the order given.
        transform: callable ``dict -> dict`` applied to each item, in the process that reads it.

    Example:
        >>> from torch.utils.data import DataLoader
        >>> from datakit.torch import StoreDataset
        >>> ds = StoreDataset("acdc.h5", split="train_scribble")  # the README's MAAG store
        >>> batch = next(iter(DataLoader(ds, batch_size=4, shuffle=True, num_workers=2)))
        >>> batch["image"].shape, batch["mask"].shape, batch["mask"].dtype
        (torch.Size([4, 1, 224, 224]), torch.Size([4, 224, 224]), torch.uint8)
        >>> sorted(set(batch["scribble"].unique().tolist()) - {255}) <= list(range(len(ds.classes)))
        True
    """

    def __init__(self, store: str | Path, split: str | None = None, indices: Sequence[int] | None = None, *,
                 transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None):
        if split is not None and indices is not None:
            raise DatakitError("give a split or indices, not both")
        if transform is not None and not callable(transform):
            raise DatakitError(f"transform must be a callable taking and returning a dict, not {transform!r}")
        with Store(store) as s:
            n = len(s)
            self.path = s.path
            self.classes: list[str] = list(s.classes)
            if indices is None:
                rows = s.indices(split)
            else:
                rows = np.asarray(indices, dtype=np.int64).reshape(-1)
                bad = rows[(rows < 0) | (rows >= n)]
                if len(bad):
                    raise DatakitError(f"indices {bad[:5].tolist()} are outside the store's {n} samples", s.path)
            self.indices = np.asarray(rows, dtype=np.int64)
            self.split = split if indices is None else None
            self._meta = {k: s.meta[k] for k in META_KEYS}
            self._label_state = s.file["label_state"][()]
            self._keypoints = s.file["keypoints"][()] if s.has_keypoints else None
        self.transform = transform
        self._h5 = LazyFile(self.path)  # opened by the process that reads, reopened in each worker

    def __len__(self) -> int:
        return len(self.indices)

    def close(self) -> None:
        """Close this process's handle (reopened on the next read)."""
        self._h5.close()

    def __getitem__(self, k: int) -> dict[str, Any]:
        if not -len(self) <= k < len(self):
            raise IndexError(f"index {k} out of range for {len(self)} samples")
        i = int(self.indices[k])
        read = self._h5.reader
        item: dict[str, Any] = {
            "image": torch.from_numpy(read("images").read(i).astype(np.float32, copy=False)),
            "mask": torch.from_numpy(read("masks").read(i)),
            "scribble": torch.from_numpy(read("scribbles").read(i)),
            "label_state": torch.from_numpy(self._label_state[i].copy()),
            "index": i,
        }
        if self._keypoints is not None:
            item["keypoints"] = torch.from_numpy(self._keypoints[i].copy())
        m = self._meta
        item.update(dataset=str(m["dataset"][i]), patient=str(m["patient"][i]), frame=str(m["frame"][i]),
                    view=str(m["view"][i]), slice=int(m["slice"][i]),
                    spacing=torch.from_numpy(np.asarray(m["spacing"][i], np.float32).copy()),
                    slice_spacing=float(m["slice_spacing"][i]))
        return self.transform(item) if self.transform is not None else item

    def __repr__(self) -> str:
        what = f"split {self.split!r}" if self.split is not None else "indices"
        return f"StoreDataset({str(self.path)!r}, {what}, {len(self)} samples, classes {self.classes})"
