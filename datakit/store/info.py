"""A short human summary of a store (``datakit info``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from datakit.store.reader import Store


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GB"


def store_info(path: str | Path) -> dict[str, Any]:
    with Store(path) as s:
        patients = s.meta["patient"]
        datasets = s.meta["dataset"]
        order = sorted(s.splits, key=lambda n: (("train", "valid", "test").index(n)
                                                  if n in ("train", "valid", "test") else 3, n))
        splits = {name: {"samples": int(len(s.splits[name])),
                         "patients": int(len(set(patients[s.splits[name]])))} for name in order}
        spacing = s.meta["spacing"]
        finite = spacing[np.isfinite(spacing).all(axis=1)] if len(spacing) else spacing
        return {
            "path": str(s.path),
            "samples": len(s),
            "patients": int(len(set(patients))),
            "datasets": sorted(set(datasets)),
            "classes": s.classes,
            "image_size": list(s.image_size),
            "channels": s.channels,
            "spacing_mm": [round(float(x), 4) for x in np.median(finite, axis=0)] if len(finite) else None,
            "normalization": str(s.file["images"].attrs.get("normalization", "")),
            "splits": splits,
            "split_method": str(s.split_attrs.get("method", "")),
            "scribble_sources": sorted(set(s.meta["scribble_source"])),
            "size_bytes": s.path.stat().st_size,
            "size": _human_bytes(s.path.stat().st_size),
            "created": str(s.attrs.get("created", "")),
            "command": str(s.attrs.get("command", "")),
        }
