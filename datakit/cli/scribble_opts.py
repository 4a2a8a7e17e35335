"""Parsing of ``--scribbles`` values shared by converters."""

from __future__ import annotations

from pathlib import Path

from datakit.errors import DatakitError
from datakit.pipeline import SynthSpec


def parse_scribbles(value: str, seed: int = 0, **params: object) -> tuple[str | Path, SynthSpec | None]:
    """Return (source-level mode, synthesis spec).

    ``auto`` / ``none`` pass through; ``synth:ALGO`` becomes a SynthSpec (the source reads no
    scribble files); anything else must be an existing folder of scribble files.
    """
    if value in ("auto", "none"):
        return value, None
    if value.startswith("synth:"):
        algo = value[6:]
        if not algo:
            raise DatakitError("--scribbles synth:ALGO needs an algorithm name")
        return "none", SynthSpec(algo, seed, {k: v for k, v in params.items() if v is not None})
    folder = Path(value)
    if not folder.is_dir():
        raise DatakitError("--scribbles expects auto, none, synth:ALGO or an existing folder", folder)
    return folder, None
