"""train: scribble-supervised segmentation (MAAG) from a datakit store. Imports only the store reader."""

__version__ = "0.1.0"
