"""``datakit convert camus SRC --out STORE.h5``: CAMUS echocardiography, NIfTI or MHD/RAW release."""

from __future__ import annotations

from pathlib import Path

import typer

from datakit.cli.common import (
    ImageCompressionOpt,
    OnErrorOpt,
    OutOpt,
    OverwriteOpt,
    RatiosOpt,
    SeedOpt,
    WorkersOpt,
    cli_errors,
    run_conversion,
)
from datakit.cli.convert import app
from datakit.cli.scribble_opts import CoverageOpt, ScribbleSeedOpt, ThicknessOpt


@app.command("camus")
@cli_errors
def convert_camus(
    ctx: typer.Context,
    src: Path = typer.Argument(..., help="CAMUS release root, database_nifti/, the MHD release root "
                               "(training/, testing/), or a folder of patient folders."),
    out: Path = OutOpt,
    format: str = typer.Option("auto", "--format", help="auto (from the files), nifti or mhd."),
    views: str = typer.Option("2CH,4CH", help="Views to convert, comma-separated."),
    frames: str = typer.Option("ed-es", help="ed-es: the ED and ES frames with their masks; sequence: every "
                               "frame of the (half) sequence, masks 255 where no ground truth."),
    size: int = typer.Option(256, help="Stored image size (square), pixels.", min=8),
    norm: str = typer.Option("zscore", help="Per-image intensity normalisation: zscore, minmax, "
                             "scale255 (x / 255), percentile-iqr, none."),
    scribbles: str = typer.Option("none", help="none, or synth:ALGO (scribbles drawn from the masks: skeleton, "
                                  "randomwalk, wsl4mis)."),
    scribble_thickness: int | None = ThicknessOpt,
    scribble_coverage: float | None = CoverageOpt,
    scribble_seed: int | None = ScribbleSeedOpt,
    split: str = typer.Option(None, help="official (default when database_split/ or listSubGroups/ exist), "
                              "stratified[:column] (default: image_quality), random, kfold:K/FOLD, file:PATH."),
    fold: int = typer.Option(None, help="Fold of listSubGroups/ (1-10) for --split official.", min=1),
    ratios: str = RatiosOpt,
    seed: int = SeedOpt,
    workers: int = WorkersOpt,
    on_error: str = OnErrorOpt,
    image_compression: str = ImageCompressionOpt,
    overwrite: bool = OverwriteOpt,
) -> None:
    """CAMUS 2D echo: 2CH/4CH ED/ES frames or sequences, LV/MYO/LA masks, Info cfg, official splits."""
    from datakit.cli.scribble_opts import parse_scribbles
    from datakit.errors import DatakitError
    from datakit.sources.camus import CamusSource

    mode, synth = parse_scribbles(scribbles, seed if scribble_seed is None else scribble_seed,
                                  thickness=scribble_thickness, coverage=scribble_coverage)
    if mode != "none":
        raise DatakitError("CAMUS has no scribble files: use --scribbles none or synth:ALGO")
    if fold is not None and split not in (None, "official"):
        raise DatakitError(f"--fold selects an official fold; it does not apply to --split {split}")
    source = CamusSource(src, format=format, views=views, frames=frames, size=size, norm=norm, fold=fold)
    run_conversion(ctx, source, synth, out=out, overwrite=overwrite, workers=workers, on_error=on_error,
                   split=split, ratios=ratios, seed=seed, image_compression=image_compression)
