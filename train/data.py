"""Data from a datakit store: a method's streams (``train.methods`` picks their samples), in batches.

Stream kinds (what each reads from the store):
- ``scribble``: images + scribbles + label_state; ``full``: images + masks + label_state;
- ``unlabelled``: images; ``masks``: masks (the discriminator's unpaired shapes).

Two ways to deliver batches, the same batches for the same seed (``MultiStreamSampler``):
- ``ResidentData`` (``--data memory``, the default when it fits): every sample the streams use is
  read once into tensors on the training device; a batch is an index_select there. No loader
  workers, no per-step HDF5 reads or host-device copies.
- ``make_loader`` (``--data stream``): loader workers read each batch from the store.

Both read through :class:`datakit.store.Store`: a sample dataset's rows with :meth:`Store.rows` (one
chunk read a sample, decoded by ``datakit.store.chunks``), label_state (small) from the table the
Store reads once (once per loader worker). The Store's handle is a
:class:`datakit.store.handle.LazyFile`: each loader worker opens the file itself.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

from datakit.store import Store
from train.methods.streams import Streams

# stream name -> store datasets it reads
STREAM_FIELDS: dict[str, tuple[str, ...]] = {
    "scribble": ("images", "scribbles", "label_state"),
    "full": ("images", "masks", "label_state"),
    "unlabelled": ("images",),
    "masks": ("masks",),
}


def read_rows(store: Store, field: str, idx: list[int] | np.ndarray) -> np.ndarray:
    """Samples ``idx`` of the store dataset ``field``, stacked in the order given: label_state from the
    table the Store reads once, a sample dataset by :meth:`Store.rows` (one chunk read a sample)."""
    if field == "label_state":
        return store.label_state[np.asarray(idx, np.int64)]
    return store.rows(field, idx)


class StoreBatches(Dataset):
    """A map-style dataset whose item is a whole request: {stream: [indices]} -> {stream: {field: array}}.

    It holds a :class:`Store` (its handle reopened in each loader worker) and nothing else of the file."""

    def __init__(self, path: str | Path, streams: dict[str, str]):
        self.store = Store(path)
        self.streams = streams  # stream name -> kind in STREAM_FIELDS

    def __getitem__(self, request: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"state": request["state"]}
        for name, idx in request["batches"].items():
            order = sorted(idx)  # sorted reads walk the file forward
            out[name] = {f: read_rows(self.store, f, order) for f in STREAM_FIELDS[self.streams[name]]}
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

    def steps(self) -> Iterator[tuple[dict[str, tuple[list[list[int]], int]], dict[str, list[int]]]]:
        """Endless steps: per stream (its current epoch's batches, the number of this step's batch in
        them), and the state after the step. A stream starts an epoch where its number is 0 (or at the
        first step, which may resume in the middle of one)."""
        state = {k: list(v) for k, v in self.state.items()}
        cache = {k: self.orders[k].batches(state[k][0]) for k in self.orders}
        while True:
            at = {}
            for k, order in self.orders.items():
                if state[k][1] >= len(cache[k]):
                    state[k] = [state[k][0] + 1, 0]
                    cache[k] = order.batches(state[k][0])
                at[k] = (cache[k], state[k][1])
                state[k][1] += 1
            yield at, {k: list(v) for k, v in state.items()}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for at, state in self.steps():
            yield {"batches": {k: epoch[i] for k, (epoch, i) in at.items()}, "state": state}

    def epoch_batches(self, stream: str) -> int:
        return len(self.orders[stream].batches(0))


def make_loader(path: str | Path, streams: Streams, kinds: dict[str, str], batch_size: int, seed: int,
                workers: int, rank: int = 0, world: int = 1, state: dict[str, list[int]] | None = None,
                pin_memory: bool = False) -> tuple[torch.utils.data.DataLoader, MultiStreamSampler]:
    sampler = MultiStreamSampler(streams.indices, batch_size, seed, rank, world, state)
    loader = torch.utils.data.DataLoader(
        StoreBatches(path, kinds), sampler=sampler, batch_size=None, num_workers=workers,
        # killed with the training process, even by kill -9 (torch's own watchdog takes ~5 s to notice)
        worker_init_fn=functools.partial(_worker_init, os.getpid()),
        pin_memory=pin_memory, persistent_workers=False, prefetch_factor=4 if workers else None,
        # own generator: creating the iterator must not consume the global RNG (exact resume)
        generator=torch.Generator().manual_seed(seed))
    return loader, sampler


def _worker_init(parent: int, worker_id: int) -> None:
    from datakit.processes import die_with_parent

    die_with_parent(parent)


def resident_bytes(store: Store, streams: Streams, kinds: dict[str, str]) -> int:
    """Bytes that ``ResidentData`` would hold for these streams (each dataset in its stored dtype)."""
    total = 0
    for field, idx in _fields_indices(streams, kinds).items():
        d = store.file[field]
        total += len(idx) * int(np.prod(d.shape[1:])) * d.dtype.itemsize
    return total


def _fields_indices(streams: Streams, kinds: dict[str, str]) -> dict[str, np.ndarray]:
    """Store dataset -> sorted unique sample indices any stream reads from it."""
    out: dict[str, set[int]] = {}
    for name, kind in kinds.items():
        for f in STREAM_FIELDS[kind]:
            out.setdefault(f, set()).update(int(i) for i in streams.indices[name])
    return {f: np.array(sorted(v), np.int64) for f, v in out.items()}


def label_indices(streams: Streams, kinds: dict[str, str], valid: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Label dataset (masks, scribbles) -> the sorted sample indices a run reads from it: its streams'
    labels, and the masks of the validation samples ``valid``."""
    out = {f: idx for f, idx in _fields_indices(streams, kinds).items() if f in ("masks", "scribbles")}
    if valid is not None and len(valid):
        out["masks"] = np.union1d(out.get("masks", np.zeros(0, np.int64)), np.asarray(valid, np.int64))
    return out


class ResidentData:
    """Every sample the streams use, read once from an open store into tensors on ``device`` (in the
    stored dtypes: a float16 store stays half the size there); batches by index_select.

    The rows of each field are the sorted unique sample indices its streams use. When a stream starts
    an epoch, the rows of that whole epoch (every field it reads, in ``MultiStreamSampler``'s order,
    each batch sorted by sample index as the loader reads it) go to the device in one copy; a step's
    batch is a slice of them and an index_select per field there. So no step reads the store or copies
    anything to the device, and both ``--data`` modes deliver the same batches.
    """

    def __init__(self, store: Store, streams: Streams, kinds: dict[str, str], device: torch.device):
        self.kinds, self.device = kinds, device
        self.rows: dict[str, np.ndarray] = {}
        self.data: dict[str, torch.Tensor] = {}
        for field, idx in _fields_indices(streams, kinds).items():
            self.rows[field] = idx
            self.data[field] = torch.from_numpy(read_rows(store, field, idx)).to(device)

    def epoch_rows(self, stream: str, batches: list[list[int]]) -> torch.Tensor:
        """(fields of the stream, batches x batch size) rows of one epoch on the device: one copy."""
        order = np.sort(np.asarray(batches, np.int64), axis=1).ravel()  # each batch sorted, as StoreBatches
        rows = torch.from_numpy(np.stack([np.searchsorted(self.rows[f], order)
                                          for f in STREAM_FIELDS[self.kinds[stream]]]))
        if self.device.type == "cuda":  # pinned: the copy is asynchronous, the step does not wait for it
            return rows.pin_memory().to(self.device, non_blocking=True)
        return rows.to(self.device)

    def batches(self, sampler: MultiStreamSampler) -> Iterator[tuple[dict[str, dict[str, torch.Tensor]],
                                                                     dict[str, list[int]]]]:
        """Endless (batch on the device, sampler state after it) pairs, in ``sampler``'s order from its state."""
        epochs: dict[str, torch.Tensor] = {}
        for at, state in sampler.steps():
            out: dict[str, dict[str, torch.Tensor]] = {}
            for name, (batches, i) in at.items():
                if i == 0 or name not in epochs:
                    epochs[name] = self.epoch_rows(name, batches)
                b = len(batches[i])
                rows = epochs[name][:, i * b:(i + 1) * b]  # a view: nothing is copied
                out[name] = {f: self.data[f].index_select(0, rows[j])
                             for j, f in enumerate(STREAM_FIELDS[self.kinds[name]])}
            yield out, state
