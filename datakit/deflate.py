"""The zlib module datakit uses: ISA-L's (``isal_zlib``) when installed, else the standard one.

ISA-L inflates several times faster than zlib and deflates the same zlib stream at a fraction of the
time; both read each other's bytes. Imported once here by the NIfTI reader and the store's chunk codec.
"""

from __future__ import annotations

try:
    from isal import isal_zlib as zlib
except ImportError:  # pragma: no cover - isal is a dependency, but stay usable without it
    import zlib  # type: ignore[no-redef]

ISAL = zlib.__name__.endswith("isal_zlib")

__all__ = ["ISAL", "zlib"]
