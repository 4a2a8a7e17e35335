"""Parsing of ``--scribbles`` values and the scribble-synthesis options shared by converters."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from datakit.errors import DatakitError

if TYPE_CHECKING:  # the pipeline imports h5py: keep it out of `datakit --help`
    from datakit.pipeline import SynthSpec

# One definition each, so every converter (and `datakit scribble`) documents them the same way.
# None means "the algorithm's own default" (tuned on real ACDC: docs/scribbles.md).
ThicknessOpt = typer.Option(None, "--scribble-thickness", min=1,
                            help="Synthetic scribble width in pixels (default: the algorithm's, tuned on ACDC: "
                            "skeleton 2, randomwalk 3, wsl4mis 4).")
CoverageOpt = typer.Option(None, "--scribble-coverage", min=0.001, max=1.0,
                           help="randomwalk: fraction of each class region the walk visits (default 0.06).")
ScribbleSeedOpt = typer.Option(None, "--scribble-seed",
                               help="Seed for synthetic scribbles (default: --seed). Per sample, the "
                               "scribble depends only on this seed and the sample's identity.")


def parse_scribbles(value: str, seed: int = 0, **params: object) -> tuple[str | Path, SynthSpec | None]:
    """Return (source-level mode, synthesis spec).

    ``auto`` / ``none`` pass through; ``synth:ALGO`` becomes a SynthSpec (the source reads no
    scribble files); anything else must be an existing folder of scribble files. ``params`` that
    are None are left to the algorithm's defaults; others must be parameters the algorithm takes.
    """
    given = {k: v for k, v in params.items() if v is not None}
    if not value.startswith("synth:"):
        if given:
            names = ", ".join("--scribble-" + k for k in given)
            verb = "apply" if len(given) > 1 else "applies"
            raise DatakitError(f"{names} only {verb} to --scribbles synth:ALGO, not {value!r}")
    if value in ("auto", "none"):
        return value, None
    if value.startswith("synth:"):
        algo = value[6:]
        if not algo:
            raise DatakitError("--scribbles synth:ALGO needs an algorithm name")
        from datakit.pipeline import SynthSpec

        return "none", SynthSpec(algo, seed, given)  # the pipeline checks algo and params before any work
    folder = Path(value)
    if not folder.is_dir():
        raise DatakitError("--scribbles expects auto, none, synth:ALGO or an existing folder", folder)
    return folder, None
