"""A short human summary of a store (``datakit info``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from datakit.splits import split_order
from datakit.store.reader import Store


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GB"


def json_list(text: Any) -> list[Any]:
    """A root attr holding a JSON list (``skipped``, ``notes``); [] when absent or unreadable."""
    try:
        value = json.loads(text) if isinstance(text, str) else []
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def _json_object(text: Any) -> dict[str, Any] | None:
    """The ``provenance`` attr (stores written before it existed have none)."""
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _median_spacing(spacing: np.ndarray) -> list[float] | None:
    finite = spacing[np.isfinite(spacing).all(axis=1)] if len(spacing) else spacing
    return [round(float(x), 4) for x in np.median(finite, axis=0)] if len(finite) else None


def spacing_summary(datasets: np.ndarray, spacing: np.ndarray) -> tuple[str, list[float] | None,
                                                                         dict[str, list[float] | None]]:
    """("uniform" | "mixed" | "unknown", the median spacing or None when mixed/unknown, per dataset).

    Mixed: the datasets of a merged store differ in their (median) spacing, or some know it and
    others do not; one number would describe only some of the samples.
    """
    per = {str(d): _median_spacing(spacing[datasets == d]) for d in sorted(set(datasets.tolist()))}
    known = [v for v in per.values() if v is not None]
    if not known:
        return "unknown", None, per
    if len(known) < len(per) or any(not np.allclose(v, known[0], rtol=1e-3) for v in known):
        return "mixed", None, per
    return "uniform", _median_spacing(spacing), per


def store_info(path: str | Path) -> dict[str, Any]:
    with Store(path) as s:
        patients = s.meta["patient"]
        datasets = s.meta["dataset"]
        splits = {name: {"samples": int(len(s.splits[name])),
                         "patients": int(len(set(patients[s.splits[name]])))} for name in split_order(s.splits)}
        kind, spacing_mm, per_dataset = spacing_summary(datasets, s.meta["spacing"])
        return {
            "path": str(s.path),
            "samples": len(s),
            "patients": int(len(set(patients))),
            "datasets": sorted(set(datasets)),
            "classes": s.classes,
            "image_size": list(s.image_size),
            "channels": s.channels,
            "spacing": kind,
            "spacing_mm": spacing_mm,
            "spacing_mm_by_dataset": per_dataset,
            "normalization": str(s.file["images"].attrs.get("normalization", "")),
            "image_dtype": s.file["images"].dtype.name,
            "image_compression": s.file["images"].compression or "none",
            "splits": splits,
            "split_method": str(s.split_attrs.get("method", "")),
            "scribble_sources": sorted(set(s.meta["scribble_source"])),
            "size_bytes": s.path.stat().st_size,
            "size": _human_bytes(s.path.stat().st_size),
            "created": str(s.attrs.get("created", "")),
            "command": str(s.attrs.get("command", "")),
            "skipped": json_list(s.attrs.get("skipped")),
            "notes": json_list(s.attrs.get("notes")),
            "provenance": _json_object(s.attrs.get("provenance")),
        }
