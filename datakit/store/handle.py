"""A store's HDF5 handle that is safe across processes: opened lazily, by the process that reads.

h5py handles must not cross a fork (a DataLoader worker) or a pickle: :class:`LazyFile` opens the file
on first use, reopens it when the process id changes, pickles without a handle, and keeps one
:class:`~datakit.store.chunks.ChunkReader` per sample dataset for the handle it belongs to. The one
helper behind :class:`datakit.store.Store` and :class:`datakit.torch.StoreDataset` (and any loader
that reads a store in workers).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py

from datakit.store.chunks import ChunkReader


class LazyFile:
    """An HDF5 file opened read-only on first use in each process; ``reader(name)`` per dataset.

    Args:
        path: the HDF5 file.

    Example:
        >>> from datakit.store.handle import LazyFile
        >>> h = LazyFile("acdc.h5")
        >>> h.is_open
        False
        >>> h.reader("masks").read(0).shape  # opens the file here, in this process
        (224, 224)
        >>> h.is_open, h.file["masks"].dtype.name
        (True, 'uint8')
        >>> h.close()
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._f: h5py.File | None = None
        self._pid: int | None = None
        self._readers: dict[str, ChunkReader] = {}

    @property
    def file(self) -> h5py.File:
        """This process's handle (opened now if this process has none)."""
        if self._f is None or self._pid != os.getpid():
            self._f = h5py.File(self.path, "r")
            self._pid = os.getpid()
            self._readers = {}
        return self._f

    @property
    def is_open(self) -> bool:
        """Whether this process holds an open handle (a forked copy of the parent's does not count)."""
        return self._f is not None and self._pid == os.getpid()

    def reader(self, name: str) -> ChunkReader:
        """The chunk reader of sample dataset ``name`` (images, masks, scribbles) of this process's handle."""
        f = self.file
        if name not in self._readers:
            self._readers[name] = ChunkReader(f[name])
        return self._readers[name]

    def close(self) -> None:
        """Close this process's handle (a later read opens it again); a forked copy's is left alone."""
        if self._f is not None and self._pid == os.getpid():
            self._f.close()
        self._f, self._pid, self._readers = None, None, {}

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_f": None, "_pid": None, "_readers": {}}  # handles never cross processes
