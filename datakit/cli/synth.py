"""``datakit synth <format> DIR``: small phantom datasets in the exact source layouts."""

from __future__ import annotations

from pathlib import Path

import typer

from datakit.cli.common import cli_errors

app = typer.Typer(help="Write a small phantom dataset in a source's exact layout.", no_args_is_help=True)


@app.command("acdc")
@cli_errors
def synth_acdc(
    out: Path = typer.Argument(..., help="Folder to create (the ACDC root: training/patientXXX/)."),
    patients: int = typer.Option(10, help="Number of patients.", min=1, max=999),
    seed: int = typer.Option(0, help="Random seed."),
    cine: bool = typer.Option(True, "--cine/--no-cine", help="Also write the 4D cine (slower)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into an existing non-empty folder."),
) -> None:
    """ACDC phantoms: Info.cfg, 4D cine, ED/ES frames, `_gt` masks, Valvano-format scribbles."""
    from datakit.synth.acdc import write_acdc_phantoms

    paths = write_acdc_phantoms(out, patients=patients, seed=seed, overwrite=overwrite, cine=cine)
    typer.echo(f"wrote {len(paths)} ACDC phantom patients to {out}")
