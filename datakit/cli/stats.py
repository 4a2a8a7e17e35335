"""``datakit stats STORE [--json PATH] [--plots DIR] [--split NAME]``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from datakit.cli.common import cli_errors
from datakit.errors import DatakitError


def _cell(d: dict[str, Any]) -> str:
    return "-" if d["mean"] is None else f"{d['mean']:.2f} ({d['std']:.2f}) %"


def _render(stats: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # piped or logged: room for the tables instead of 80 wrapped columns
        console.width = max(console.width, 160)
    names = list(stats["splits"])
    h, w = stats["image_size"]
    summary = Table(title=f"{stats['store']}: {stats['channels']} x {h} x {w}, scribbles "
                          f"{', '.join(stats['scribble_sources'])}", title_justify="left")
    for col in ("split", "samples", "patients", "with mask", "with scribble", "intensity mean (std)",
                "p1 / p99", "spacing mm (median)"):
        summary.add_column(col, justify="left" if col == "split" else "right")
    for name in names:
        d = stats["splits"][name]
        i = d["intensity"]
        sp = d["spacing_mm"]
        summary.add_row(name, str(d["samples"]), str(d["patients"]), str(d["samples_with_mask"]),
                        str(d["samples_with_scribble"]),
                        "-" if i["mean"] is None else f"{i['mean']:.3f} ({i['std']:.3f})",
                        "-" if i["p1"] is None else f"{i['p1']:.3f} / {i['p99']:.3f}",
                        "unknown" if sp is None else " x ".join(f"{x:.3g}" for x in sp["median"]))
    console.print(summary)
    for title, key in (("mask coverage, % of image pixels: mean (std)", "mask_coverage_pct"),
                       ("scribble coverage, % of image pixels: mean (std)", "scribble_coverage_pct")):
        console.print(f"[bold]{title}")
        t = Table()
        t.add_column("class")
        for name in names:
            t.add_column(name, justify="right")
        for cls in stats["classes"]:
            t.add_row(cls, *(_cell(stats["splits"][n]["classes"][cls][key]) for n in names))
        console.print(t)
    console.print("[bold]label_state per class: present / absent / unknown samples")
    t = Table()
    t.add_column("class")
    for name in names:
        t.add_column(name, justify="right")
    for cls in stats["classes"]:
        t.add_row(cls, *("{present} / {absent} / {unknown}".format(**stats["splits"][n]["classes"][cls]["label_state"])
                         for n in names))
    console.print(t)


def _check_outputs(json_path: Path | None, plots: Path | None, overwrite: bool = False) -> None:
    """Refuse output paths that cannot be written, or would replace files without --overwrite, before the
    store is read, not after."""
    from datakit.stats_plots import PLOT_NAMES
    from datakit.store.writer import check_writable  # h5py: not at import (datakit --help stays fast)

    if json_path is not None and str(json_path) != "-":
        check_writable(json_path, overwrite)
    if plots is not None:  # created with its parents; the nearest existing one must be a folder
        existing = next(p for p in (plots, *plots.parents) if p.exists())
        if not existing.is_dir():
            raise DatakitError("is not a folder; cannot create the --plots folder in it", existing)
        taken = [n for n in PLOT_NAMES if (plots / n).exists() or (plots / n).is_symlink()]
        if taken and not overwrite:
            raise DatakitError(f"already holds {', '.join(taken)}; pass --overwrite to replace them", plots)


@cli_errors
def stats(
    store: Path = typer.Argument(..., help="Store file (.h5)."),
    json_path: Path | None = typer.Option(None, "--json", help="Also write the statistics as JSON here "
                                          "('-' for stdout, no table).", dir_okay=False),
    plots: Path | None = typer.Option(None, "--plots", help="Write PNG figures into this folder.", file_okay=False),
    split: str | None = typer.Option(None, "--split", help="Only this split (default: all samples and every split)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --json file or --plots figures."),
) -> None:
    """Per split and class: coverage of masks and scribbles, label states, intensities, spacing."""
    from datakit.safe_io import write_file
    from datakit.stats import json_safe, store_stats

    _check_outputs(json_path, plots, overwrite)
    d, figs = store_stats(store, split)
    text = json.dumps(json_safe(d), indent=2, allow_nan=False)  # null, not NaN: strict parsers reject NaN
    if json_path is not None and str(json_path) == "-":
        typer.echo(text)
    else:
        _render(d)
        if json_path is not None:
            write_file(json_path, text + "\n", overwrite)  # a unique temporary beside it, renamed
            typer.echo(f"wrote {json_path}")
    if plots is not None:
        from datakit.safe_io import os_error
        from datakit.stats_plots import write_plots

        try:
            written = write_plots(d, figs, plots, overwrite)
        except OSError as e:  # disk full: one line naming the folder
            raise os_error(e, plots) from None
        for p in written:
            typer.echo(f"wrote {p}", err=str(json_path) == "-")
