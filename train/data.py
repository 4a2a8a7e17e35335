"""Data from a datakit store: the three MAAG streams, read in batches by loader workers.

Streams (MAAG.md):
- ``scribble``: images + scribbles (+ label_state) of the scribble-annotated patients;
- ``unlabelled``: images without labels; MAAG uses the scribble patients' images again;
- ``masks``: full masks of OTHER patients, never paired with the images above (the shape prior);
  only samples whose label_state is >= 0 for every class (complete masks).
They come from the store's splits ``train_scribble`` + ``train_masks`` when both exist (MAAG's own
split); otherwise the patients of ``train`` are halved: the first half of the sorted patient ids
gives scribbles (and unlabelled images), the second half unpaired masks. ``pce`` uses the scribble
stream alone; ``full`` uses the full masks of the same scribble patients (the upper bound).

Speed: each request is a whole batch. Chunks are one sample each, so a sample is read with
``read_direct_chunk`` (no hyperslab machinery) and decoded here (gzip via isal/zlib, HDF5 shuffle
undone with numpy); label_state (small) is loaded once per worker. Every worker opens the file
itself (Store re-opens after a fork).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

from datakit.errors import DatakitError
from datakit.store import Store

try:  # isal inflates gzip ~2x faster than zlib; both read the same bytes
    from isal import isal_zlib as _inflate_lib
except ImportError:  # pragma: no cover
    _inflate_lib = zlib

# stream name -> store datasets it reads
STREAM_FIELDS: dict[str, tuple[str, ...]] = {
    "scribble": ("images", "scribbles", "label_state"),
    "full": ("images", "masks", "label_state"),
    "unlabelled": ("images",),
    "masks": ("masks",),
}


@dataclass
class Streams:
    """Sample indices of each stream a method needs, and how they were chosen (for the log)."""

    indices: dict[str, np.ndarray]
    how: str


def _patients_of(store: Store, idx: np.ndarray) -> list[str]:
    return sorted(set(store.meta["patient"][idx].tolist()))


def _with_scribbles(store: Store, idx: np.ndarray, split: str) -> np.ndarray:
    keep = idx[store.meta["scribble_source"][idx] != "none"]
    if not len(keep):
        raise DatakitError(f"split {split!r} has no scribbles (meta/scribble_source is 'none' for all its "
                           "samples); convert with --scribbles auto (manual files) or synth:ALGO", store.path)
    return keep


def _complete_masks(store: Store, idx: np.ndarray, split: str) -> np.ndarray:
    """Samples whose mask is complete: label_state >= 0 for every class.

    The discriminator takes these masks as real shapes; a mask with an unknown class (CAMUS
    sequence frames are all 255; merged and Unity stores leave unannotated classes in the
    background) would teach it wrong shapes.
    """
    ls = store.file["label_state"][()]
    keep = idx[(ls[idx] >= 0).all(axis=1)]
    if not len(keep):
        raise DatakitError(f"split {split!r} has no sample with a complete mask (label_state >= 0 for every "
                           f"class, {len(idx)} samples checked): maag needs unpaired full masks", store.path)
    return keep


def resolve_streams(store: Store, method: str) -> Streams:
    splits = store.splits
    if "train_scribble" in splits and "train_masks" in splits:
        scrib, masks, names = splits["train_scribble"], splits["train_masks"], ("train_scribble", "train_masks")
        how = "splits train_scribble (scribbles, unlabelled images) + train_masks (unpaired masks)"
    elif "train" in splits:
        train = splits["train"]
        patients = _patients_of(store, train)
        if len(patients) < 2 and method == "maag":
            raise DatakitError(f"split 'train' has {len(patients)} patient; maag needs two or more "
                               "(scribbles from one half, unpaired masks from the other)", store.path)
        half = (len(patients) + 1) // 2
        first = np.isin(store.meta["patient"][train], patients[:half])
        scrib, masks, names = train[first], train[~first], ("train (first half)", "train (second half)")
        how = (f"split train halved by patient: {half} scribble patients ({patients[0]}..{patients[half - 1]}), "
               f"{len(patients) - half} unpaired-mask patients")
    else:
        raise DatakitError(f"the store has no 'train' split (nor train_scribble + train_masks); it has "
                           f"{sorted(splits) or 'none'}", store.path)
    if method == "full":
        return Streams({"full": scrib}, how + "; full uses the scribble patients' full masks")
    scrib = _with_scribbles(store, scrib, names[0])
    if method == "pce":
        return Streams({"scribble": scrib}, how)
    if not len(masks):
        raise DatakitError(f"{names[1]} holds no samples: maag needs unpaired masks", store.path)
    kept = _complete_masks(store, masks, names[1])
    if len(kept) < len(masks):
        how += (f"; {len(masks) - len(kept)} of {len(masks)} unpaired-mask samples left out "
                "(a class with label_state -1)")
    masks = kept
    return Streams({"scribble": scrib, "unlabelled": scrib, "masks": masks}, how)


class _ChunkReader:
    """Reads one sample (one chunk) of a dataset, decoding gzip/shuffle here when possible."""

    def __init__(self, d: h5py.Dataset):
        self.d = d
        self.shape = d.shape[1:]
        f = set(d._filters) if hasattr(d, "_filters") else set()
        self.direct = d.chunks == (1, *self.shape) and f <= {"gzip", "shuffle"}
        self.gzip, self.shuffle = "gzip" in f, "shuffle" in f
        self.dtype = d.dtype

    def read(self, i: int) -> np.ndarray:
        if not self.direct:
            return self.d[i]
        mask, raw = self.d.id.read_direct_chunk((i,) + (0,) * len(self.shape))
        if mask:  # a filter was skipped for this chunk (HDF5 does so when it would not shrink it)
            return self.d[i]
        if self.gzip:
            raw = _inflate_lib.decompress(raw)
        if self.shuffle and self.dtype.itemsize > 1:
            a = np.frombuffer(raw, np.uint8).reshape(self.dtype.itemsize, -1).T.copy().view(self.dtype)
        else:
            a = np.frombuffer(raw, self.dtype).copy()
        return a.reshape(self.shape)


class StoreBatches(Dataset):
    """A map-style dataset whose item is a whole request: {stream: [indices]} -> {stream: {field: array}}."""

    def __init__(self, path: str | Path, streams: dict[str, str]):
        self.store = Store(path)
        self.streams = streams  # stream name -> kind in STREAM_FIELDS
        self._readers: dict[str, _ChunkReader] | None = None
        self._label_state: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        s = self.__dict__.copy()
        s["_readers"] = None
        s["_label_state"] = None
        return s

    def _reader(self, name: str) -> _ChunkReader:
        if self._readers is None:
            self._readers = {}
        if name not in self._readers:
            self._readers[name] = _ChunkReader(self.store.file[name])
        return self._readers[name]

    def read(self, field: str, idx: list[int]) -> np.ndarray:
        if field == "label_state":
            if self._label_state is None:
                self._label_state = self.store.file["label_state"][()]
            return self._label_state[idx]
        r = self._reader(field)
        return np.stack([r.read(i) for i in idx])

    def __getitem__(self, request: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"state": request["state"]}
        for name, idx in request["batches"].items():
            order = sorted(idx)  # sorted reads walk the file forward
            out[name] = {f: self.read(f, order) for f in STREAM_FIELDS[self.streams[name]]}
        return out


class _StreamOrder:
    """One stream's batches: a DistributedSampler's shuffled share per epoch, cut into batches."""

    def __init__(self, indices: np.ndarray, batch_size: int, seed: int, rank: int, world: int):
        self.indices = np.asarray(indices, np.int64)
        self.batch_size = batch_size
        self.sampler = DistributedSampler(range(len(self.indices)), num_replicas=world, rank=rank,
                                          shuffle=True, seed=seed, drop_last=False)

    def batches(self, epoch: int) -> list[list[int]]:
        self.sampler.set_epoch(epoch)
        pos = list(self.sampler)
        while len(pos) < self.batch_size:  # a stream smaller than a batch: repeat it
            pos = pos + pos
        b = self.batch_size
        return [[int(self.indices[p]) for p in pos[k * b:(k + 1) * b]] for k in range(len(pos) // b)]


class MultiStreamSampler(Sampler):
    """Endless requests, one batch of every stream each; each request carries the resume state.

    The state (per stream: epoch, batches consumed) travels with the batch, so the training loop
    records what it consumed, not what the workers prefetched, and a resumed run continues exactly.
    """

    def __init__(self, streams: dict[str, np.ndarray], batch_size: int, seed: int, rank: int = 0,
                 world: int = 1, state: dict[str, list[int]] | None = None):
        self.orders = {k: _StreamOrder(v, batch_size, seed + i, rank, world)
                       for i, (k, v) in enumerate(sorted(streams.items()))}
        self.state = {k: list(state[k]) if state and k in state else [0, 0] for k in self.orders}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        state = {k: list(v) for k, v in self.state.items()}
        cache = {k: self.orders[k].batches(state[k][0]) for k in self.orders}
        while True:
            batches = {}
            for k, order in self.orders.items():
                if state[k][1] >= len(cache[k]):
                    state[k] = [state[k][0] + 1, 0]
                    cache[k] = order.batches(state[k][0])
                batches[k] = cache[k][state[k][1]]
                state[k][1] += 1
            yield {"batches": batches, "state": {k: list(v) for k, v in state.items()}}

    def epoch_batches(self, stream: str) -> int:
        return len(self.orders[stream].batches(0))


def make_loader(path: str | Path, streams: Streams, kinds: dict[str, str], batch_size: int, seed: int,
                workers: int, rank: int = 0, world: int = 1, state: dict[str, list[int]] | None = None,
                pin_memory: bool = False) -> tuple[torch.utils.data.DataLoader, MultiStreamSampler]:
    sampler = MultiStreamSampler(streams.indices, batch_size, seed, rank, world, state)
    loader = torch.utils.data.DataLoader(
        StoreBatches(path, kinds), sampler=sampler, batch_size=None, num_workers=workers,
        pin_memory=pin_memory, persistent_workers=False, prefetch_factor=4 if workers else None,
        # own generator: creating the iterator must not consume the global RNG (exact resume)
        generator=torch.Generator().manual_seed(seed))
    return loader, sampler
