"""``datakit synth camus DIR``: CAMUS phantoms in the exact layout of either public release."""

from __future__ import annotations

from pathlib import Path

import typer

from datakit.cli.common import cli_errors
from datakit.cli.synth import app


@app.command("camus")
@cli_errors
def synth_camus(
    out: Path = typer.Argument(..., help="Folder to create (the release root)."),
    release: str = typer.Option("nifti", help="nifti (database_nifti/, database_split/, half sequences) or "
                                "mhd (training/, testing/, listSubGroups/, .mhd + .raw, full sequences)."),
    patients: int = typer.Option(10, help="Number of patients.", min=1, max=9999),
    row_spacing: float = typer.Option(0.154, help="Row spacing in mm (columns about twice): 0.154 gives "
                                      "about 800 x 550 pixel images; larger values give smaller, faster files.",
                                      min=0.01),
    seed: int = typer.Option(0, help="Random seed."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into an existing non-empty folder."),
) -> None:
    """CAMUS phantoms: echo fans with speckle, LV/MYO/LA masks, Info cfg files, split lists."""
    from datakit.pipeline import _progress
    from datakit.synth.camus import write_camus_phantoms

    with _progress(None) as bar:  # on a terminal only, as convert's
        task = bar.add_task("writing CAMUS phantoms", total=patients)
        paths = write_camus_phantoms(out, patients=patients, release=release, seed=seed, overwrite=overwrite,
                                     row_spacing=row_spacing, progress=lambda n: bar.advance(task, n))
    typer.echo(f"wrote {len(paths)} CAMUS phantom patients ({release} release) to {out}")
