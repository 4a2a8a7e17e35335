"""``datakit splines-to-masks <format> SRC --out STORE.h5``: spline-labelled datasets to a store."""

from __future__ import annotations

from pathlib import Path

import typer

from datakit.cli.common import (
    OutOpt,
    OverwriteOpt,
    RatiosOpt,
    SeedOpt,
    WorkersOpt,
    cli_errors,
    run_conversion,
)
from datakit.cli.scribble_opts import CoverageOpt, ScribbleSeedOpt, ThicknessOpt

app = typer.Typer(help="Rasterise spline (curve) labels into masks and convert to a datakit store.",
                  no_args_is_help=True)


@app.command("unity")
@cli_errors
def unity(
    ctx: typer.Context,
    src: Path = typer.Argument(..., help="Unity root: png-cache/ and the labels JSON files."),
    out: Path = OutOpt,
    labels: Path = typer.Option(None, "--labels", help="Labels JSON to convert (default SRC/labels-all.json, "
                                "else SRC/labels/labels-all.json; a relative name is looked up in SRC). "
                                "Split files are looked for beside it, then in SRC."),
    classes: Path = typer.Option(None, "--classes", help="Class manifest: classes, curve rules "
                                 "(fill/line/between), points (default manifests/unity_classes.json)."),
    size: int = typer.Option(256, help="Stored image size (square, aspect kept by padding), pixels.", min=8),
    norm: str = typer.Option("scale255", help="Per-image intensity normalisation: scale255 (x / 255), "
                             "percentile-iqr, zscore, minmax, none."),
    scribbles: str = typer.Option("none", help="none, or synth:ALGO to draw scribbles from the masks."),
    scribble_thickness: int | None = ThicknessOpt,
    scribble_coverage: float | None = CoverageOpt,
    scribble_seed: int | None = ScribbleSeedOpt,
    split: str = typer.Option(None, help="official (labels-train/tune/ival -> train/valid/test; the default "
                              "when those files exist, else random), random, kfold:K/FOLD or file:PATH."),
    ratios: str = RatiosOpt,
    seed: int = SeedOpt,
    workers: int = WorkersOpt,
    on_error: str = typer.Option("stop", "--on-error", help="stop: exit 1 on the first problem; skip: leave "
                                 "out a bad frame (bad key, missing image) or a malformed label (the frame is "
                                 "kept, its class unknown), record why. Degenerate labels (2 points, NaN) "
                                 "never stop: drawn as segments or left unknown, and listed."),
    off_as: str = typer.Option("absent", "--off-as", help="What an 'off' label means: absent (label state 0, "
                               "as Unity's own training code reads it) or unknown (-1: Unity also writes "
                               "'off' for labels the frame's annotation project never asked for)."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Unity Imaging echo: PNG frames + curve/point labels -> masks, label states, keypoints."""
    from datakit.cli.scribble_opts import parse_scribbles
    from datakit.errors import DatakitError
    from datakit.sources.unity import UnitySource

    if on_error not in ("stop", "skip"):
        raise DatakitError(f"--on-error must be stop or skip, not {on_error!r}")
    if scribbles not in ("none", "auto") and not scribbles.startswith("synth:"):
        raise DatakitError("Unity has no manual scribbles: --scribbles takes none or synth:ALGO")
    _, synth = parse_scribbles(scribbles, seed if scribble_seed is None else scribble_seed,
                              thickness=scribble_thickness, coverage=scribble_coverage)
    source = UnitySource(src, labels=labels, classes_file=classes, size=size, norm=norm, on_error=on_error,
                          off_as=off_as)
    run_conversion(ctx, source, synth, out=out, overwrite=overwrite, workers=workers, on_error=on_error,
                   split=split, ratios=ratios, seed=seed)
