"""``datakit merge A.h5 B.h5 ... --out C.h5``: several stores into one, classes unified by name."""

from __future__ import annotations

from pathlib import Path

import typer

from datakit.cli.common import OutOpt, OverwriteOpt, cli_errors, command_line


@cli_errors
def merge(
    stores: list[Path] = typer.Argument(..., help="Stores to merge (.h5), same image size and channels."),
    out: Path = OutOpt,
    classes: str = typer.Option(None, help="Final class list, e.g. background,RV,MYO,LV,lung; NEW=OLD|OLD2 "
                                "renames (background=bg). Default: the inputs' classes by name, in order."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Merge stores: labels remapped to one class list, meta/dataset kept, splits merged by name."""
    from datakit.merge import merge_stores

    spec = [c for c in classes.split(",") if c.strip()] if classes else None
    rep = merge_stores(stores, out, classes=spec, overwrite=overwrite, command=command_line())
    typer.echo(rep.class_map_text())
    for note in rep.notes:
        typer.echo(note, err=True)
    typer.echo(rep.summary())
