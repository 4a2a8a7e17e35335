"""``datakit scribble STORE --algo ALGO --out NEW.h5``: re-draw a store's scribbles from its masks."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from datakit.choices import SCRIBBLE_ALGORITHMS
from datakit.cli.common import OutOpt, OverwriteOpt, WorkersOpt, cli_errors, command_line, default_workers
from datakit.cli.scribble_opts import CoverageOpt, ThicknessOpt


@cli_errors
def scribble(
    ctx: typer.Context,
    store: Path = typer.Argument(..., help="Store to read (.h5); never modified."),
    algo: Literal[SCRIBBLE_ALGORITHMS] = typer.Option(..., "--algo", help="Scribble algorithm (docs/scribbles.md)."),
    out: Path = OutOpt,
    thickness: int | None = ThicknessOpt,
    coverage: float | None = CoverageOpt,
    seed: int = typer.Option(0, "--seed", help="Seed of the scribbles: the same seed draws the same scribbles "
                             "as convert --scribbles synth:ALGO with that --seed."),
    workers: int = WorkersOpt,
    overwrite: bool = OverwriteOpt,
) -> None:
    """Re-draw a store's scribbles from its masks into a new store; everything else is kept.

    meta/scribble_source becomes synthetic:ALGO. The same seed gives the same scribbles as
    `convert ... --scribbles synth:ALGO`."""
    from datakit.progress import progress_bar
    from datakit.rescribble import rescribble
    from datakit.store import Store

    params = {k: v for k, v in {"thickness": thickness, "coverage": coverage}.items() if v is not None}
    with Store(store) as s:
        total = len(s)
    with progress_bar() as bar:
        task = bar.add_task(f"scribbling ({algo})", total=total)
        rep = rescribble(store, out, algo, seed=seed, params=params, overwrite=overwrite, command=command_line(ctx),
                         workers=workers or default_workers(),
                         progress=lambda n: bar.advance(task, n))
    typer.echo(rep.summary())
