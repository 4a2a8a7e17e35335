"""``datakit convert <format> SRC --out STORE.h5``: one sub-command per source format."""

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
from datakit.cli.scribble_opts import CoverageOpt, ScribbleSeedOpt, ThicknessOpt

app = typer.Typer(help="Convert a source dataset into a datakit store.", no_args_is_help=True)


@app.command("acdc")
@cli_errors
def convert_acdc(
    ctx: typer.Context,
    src: Path = typer.Argument(..., help="ACDC root, its training/ folder, or a folder of patient folders."),
    out: Path = OutOpt,
    scribbles: str = typer.Option("auto", help="auto (manual *_scribble.nii.gz beside the frames), "
                                  "none, a folder of scribble files, or synth:ALGO (skeleton, "
                                  "randomwalk, wsl4mis)."),
    scribble_thickness: int | None = ThicknessOpt,
    scribble_coverage: float | None = CoverageOpt,
    scribble_seed: int | None = ScribbleSeedOpt,
    spacing: float = typer.Option(1.51, help="In-plane pixel spacing of the store, mm."),
    size: int = typer.Option(224, help="Stored image size (square), pixels.", min=8),
    norm: str = typer.Option("percentile-iqr", help="Per-volume intensity normalisation: percentile-iqr "
                             "(clip 5th-95th percentile, (x - median) / IQR), zscore, minmax, none."),
    split: str = typer.Option("stratified", help="stratified[:column] (by Group), random, kfold:K/FOLD, "
                              "or file:PATH (JSON split name -> patient ids)."),
    ratios: str = RatiosOpt,
    seed: int = SeedOpt,
    workers: int = WorkersOpt,
    on_error: str = OnErrorOpt,
    image_compression: str = ImageCompressionOpt,
    overwrite: bool = OverwriteOpt,
) -> None:
    """ACDC cine MRI: ED/ES frames, `_gt` masks, Valvano scribbles, Info.cfg."""
    from datakit.cli.scribble_opts import parse_scribbles
    from datakit.sources.acdc import AcdcSource

    mode, synth = parse_scribbles(scribbles, seed if scribble_seed is None else scribble_seed,
                                  thickness=scribble_thickness, coverage=scribble_coverage)
    source = AcdcSource(src, scribbles=mode, spacing=spacing, size=size, norm=norm)
    run_conversion(ctx, source, synth, out=out, overwrite=overwrite, workers=workers, on_error=on_error,
                   split=split, ratios=ratios, seed=seed, image_compression=image_compression)
