"""The store: one package owns the format (docs/store.md).

- :class:`StoreWriter` streams samples into a temporary file and renames it into place.
- :class:`Store` reads one sample in O(1), streams arrays in chunks, exposes splits and tables.
- :func:`validate_store` checks every clause of the contract; its structural rules, which ``Store()`` runs on
  open, are written once in :mod:`datakit.store.check`; :func:`store_info` summarises.
- :class:`datakit.store.handle.LazyFile`: the fork-safe lazy HDF5 handle behind the readers;
  :mod:`datakit.store.volumes` groups slices back into volumes.
"""

from datakit.store.check import Violation
from datakit.store.info import store_info
from datakit.store.reader import Store
from datakit.store.validate import validate_store
from datakit.store.writer import EncodedSample, StoreWriter, encode_sample

__all__ = ["EncodedSample", "Store", "StoreWriter", "Violation", "encode_sample", "store_info",
           "validate_store"]
