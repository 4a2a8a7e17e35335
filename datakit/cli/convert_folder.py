"""``datakit convert folder SRC --out STORE.h5``: generic image/mask folders (``register`` adds it to
``convert.app``)."""

from __future__ import annotations

from pathlib import Path

import typer

from datakit.cli.common import (
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
from datakit.errors import DatakitError


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [c.strip() for c in text.split(",") if c.strip()]


def _ints(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise DatakitError(f"--mask-values must be comma-separated integers, not {text!r}") from None


@cli_errors
def convert_folder(
    ctx: typer.Context,
    src: Path = typer.Argument(..., help="Folder with images/ and masks/ (optionally under train/ valid/ "
                               "test/), or images with masks beside them (--mask-suffix)."),
    out: Path = OutOpt,
    classes: str = typer.Option(None, help="Class names by label value, e.g. background,polyp "
                                "(default background,foreground)."),
    mask_suffix: str = typer.Option("", help="Mask name = image name + this, e.g. _mask for X_mask.tif."),
    images_dir: str = typer.Option("images", help="Name of the images sub-folder (e.g. CXR_png)."),
    masks_dir: str = typer.Option("masks", help="Name of the masks sub-folder."),
    binarize: float = typer.Option(None, help="Mask value > T is foreground (JPEG masks: 127)."),
    mask_values: str = typer.Option(None, help="Grey levels of the classes in order, e.g. 0,64,128,255; "
                                    "any other value is an error."),
    size: int = typer.Option(256, help="Stored image size (square); aspect kept, padded.", min=8),
    norm: str = typer.Option("auto", help="Per-image normalisation: auto (scale255 for 8-bit images, else "
                             "percentile-iqr), scale255, percentile-iqr, zscore, minmax, none."),
    channels: str = typer.Option("auto", help="auto (3 if any image is colour), 1 (colour to luminance), 3."),
    patient_regex: str = typer.Option(None, help="Regex on the file's relative path giving the subject id "
                                      "(group 'patient', else group 1, else the match), e.g. 'TCGA_\\w+_\\w+'. "
                                      "Default: each file is its own subject."),
    name: str = typer.Option(None, help="Dataset name (meta/dataset = folder:NAME; default the folder name)."),
    scribbles: str = typer.Option("none", help="none, or synth:ALGO (scribbles drawn from the masks)."),
    scribble_thickness: int | None = ThicknessOpt,
    scribble_coverage: float | None = CoverageOpt,
    scribble_seed: int | None = ScribbleSeedOpt,
    split: str = typer.Option(None, help="official (train/ valid/ test/ sub-folders; the default when present), "
                              "random (the default otherwise), kfold:K/FOLD, file:PATH."),
    ratios: str = RatiosOpt,
    seed: int = SeedOpt,
    workers: int = WorkersOpt,
    on_error: str = OnErrorOpt,
    overwrite: bool = OverwriteOpt,
) -> None:
    """Generic image/mask folders: PNG, JPEG, TIFF, BMP; grey or RGB; pairs matched by name."""
    from datakit.cli.scribble_opts import parse_scribbles
    from datakit.sources.folder import FolderSource

    mode, synth = parse_scribbles(scribbles, seed if scribble_seed is None else scribble_seed,
                                 thickness=scribble_thickness, coverage=scribble_coverage)
    if mode != "none":
        raise DatakitError(f"--scribbles for folders is none or synth:ALGO, not {scribbles!r}")
    source = FolderSource(src, classes=_names(classes), mask_suffix=mask_suffix, images_dir=images_dir,
                          masks_dir=masks_dir, binarize=binarize,
                          mask_values=_ints(mask_values), size=size, norm=norm, channels_opt=channels,
                          patient_regex=patient_regex, name=name)
    run_conversion(ctx, source, synth, out=out, overwrite=overwrite, workers=workers, on_error=on_error,
                   split=split, ratios=ratios, seed=seed)


def register(app: typer.Typer) -> None:
    app.command("folder")(convert_folder)
