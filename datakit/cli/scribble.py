"""``datakit scribble STORE --algo ALGO --out NEW.h5``: re-draw a store's scribbles from its masks."""

from __future__ import annotations

from pathlib import Path

import typer

from datakit.cli.common import OutOpt, OverwriteOpt, SeedOpt, WorkersOpt, cli_errors, command_line, default_workers
from datakit.cli.scribble_opts import CoverageOpt, ThicknessOpt


@cli_errors
def scribble(
    ctx: typer.Context,
    store: Path = typer.Argument(..., help="Store to read (.h5); never modified."),
    algo: str = typer.Option(..., "--algo", help="Scribble algorithm: skeleton, randomwalk or wsl4mis."),
    out: Path = OutOpt,
    thickness: int | None = ThicknessOpt,
    coverage: float | None = CoverageOpt,
    seed: int = SeedOpt,
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
