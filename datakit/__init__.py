"""datakit: medical-image segmentation datasets to one HDF5 store (see docs/store.md)."""

__version__ = "0.1.0"
