"""``datakit synth unity DIR``: Unity Imaging phantoms (a command added to the ``synth`` group)."""

from __future__ import annotations

from pathlib import Path

import typer

from datakit.cli.common import cli_errors
from datakit.cli.synth import app


@app.command("unity")
@cli_errors
def synth_unity(
    out: Path = typer.Argument(..., help="Folder to create (the Unity root: png-cache/, labels-*.json)."),
    videos: int = typer.Option(6, help="Number of videos (the last two are tune and ival).", min=1, max=999),
    frames: int = typer.Option(3, help="Labelled frames per video.", min=1, max=999),
    seed: int = typer.Option(0, help="Random seed."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into an existing non-empty folder."),
) -> None:
    """Unity phantoms: echo-like PNGs in png-cache/, spline labels in both JSON variants, splits."""
    from datakit.synth.unity import write_unity_phantoms

    paths = write_unity_phantoms(out, videos=videos, frames=frames, seed=seed, overwrite=overwrite)
    typer.echo(f"wrote {len(paths)} frames of {videos} Unity phantom videos to {out}")
