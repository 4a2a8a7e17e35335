"""What the CAMUS tests share (a plain module: tests import it, never a conftest): a conversion to a store."""

from __future__ import annotations

from pathlib import Path


def convert_store(src: Path, out: Path, **kwargs) -> Path:
    from datakit.pipeline import ConvertOptions, convert
    from datakit.sources.camus import CamusSource

    opts = {k: kwargs.pop(k) for k in ("split", "on_error") if k in kwargs}
    convert(CamusSource(src, size=kwargs.pop("size", 64), **kwargs),
            ConvertOptions(out=out, workers=1, progress=False, **opts), log=lambda m: None)
    return out
