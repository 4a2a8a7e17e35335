"""Constants more than one part of datakit (and ``train``) needs, and the default worker count; no
datakit imports, so anything may import it."""

IGNORE = 255  # "unknown / not labelled" in masks and scribbles: the store's ignore_index (docs/store.md)
MIN_IMAGE_SIZE = 8  # smallest stored image side (--size): below it letterbox and scribbles make no sense


def default_workers() -> int:
    """Worker count when ``--workers 0``: the CPUs this process may run on (its affinity), else all."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
