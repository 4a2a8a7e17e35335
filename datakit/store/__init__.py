"""The store: one module owns the format (../shared/STORE.md; docs/store.md restates it).

- :class:`StoreWriter` streams samples into a temporary file and renames it into place.
- :class:`Store` reads one sample in O(1), streams arrays in chunks, exposes splits and tables.
- :func:`validate_store` checks every clause of the contract; :func:`store_info` summarises.
"""

from datakit.store.check import Violation
from datakit.store.info import store_info
from datakit.store.reader import Store
from datakit.store.validate import validate_store
from datakit.store.writer import EncodedSample, StoreWriter, encode_sample

__all__ = ["EncodedSample", "Store", "StoreWriter", "Violation", "encode_sample", "store_info",
           "validate_store"]
