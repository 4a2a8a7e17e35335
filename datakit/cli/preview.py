"""``datakit preview STORE --out FILE.png [--split S] [--n 16] [--seed 0]``."""

from __future__ import annotations

from pathlib import Path

import typer

from datakit.cli.common import OverwriteOpt, cli_errors
from datakit.errors import DatakitError


@cli_errors
def preview(
    store: Path = typer.Argument(..., help="Store file (.h5)."),
    out: Path = typer.Option(..., "--out", "-o", help="PNG to write.", dir_okay=False),
    split: str | None = typer.Option(None, "--split", help="Draw samples from this split (default: all)."),
    n: int = typer.Option(16, "--n", help="Number of samples.", min=1),
    seed: int = typer.Option(0, "--seed", help="Which samples: the same seed shows the same ones."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """A PNG montage of samples: image, mask and scribble overlays, captions, class legend.

    The first thing to look at after a conversion."""
    from datakit.preview import write_preview

    if out.suffix.lower() != ".png":
        raise DatakitError("--out must be a .png file", out)
    typer.echo(f"wrote {write_preview(store, out, split, n, seed, overwrite=overwrite)}")
