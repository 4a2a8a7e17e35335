"""``datakit export <tool> STORE OUT_DIR``: a store in another tool's dataset layout."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from datakit.choices import EXPORT_FORMATS, EXPORT_LABELS
from datakit.cli.common import cli_errors

app = typer.Typer(help="Export a store to another tool's dataset layout.", no_args_is_help=True)


@app.command("nnunet")
@cli_errors
def export_nnunet(
    store: Path = typer.Argument(..., help="Store file (.h5)."),
    out_dir: Path = typer.Argument(..., help="nnU-Net raw folder (nnUNet_raw); DatasetNNN_NAME is made in it."),
    dataset_id: int = typer.Option(..., "--dataset-id", help="nnU-Net dataset id, 1-999."),
    name: str = typer.Option(..., "--name", help="Dataset name (DatasetNNN_NAME)."),
    labels: Literal[EXPORT_LABELS] = typer.Option("masks", help="masks, or scribbles (unlabelled pixels get the "
                                                  "'ignore' label)."),
    fmt: Literal[EXPORT_FORMATS] = typer.Option("auto", "--format", help="auto (PNG for 8-bit natural images "
                                                "without spacing, else NIfTI), nifti, png."),
    channel_names: str = typer.Option(None, help="Comma-separated channel names for dataset.json "
                                      "(default R,G,B or image; 'CT' switches nnU-Net to CT normalisation)."),
    preprocessed: Path = typer.Option(None, help="nnUNet_preprocessed folder: splits_final.json is also written "
                                      "to DIR/DatasetNNN_NAME/, where nnU-Net's trainer reads it.",
                                      file_okay=False),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing DatasetNNN_NAME folder (and "
                                   "the splits_final.json under --preprocessed)."),
) -> None:
    """nnU-Net v2 raw dataset: imagesTr/labelsTr (+Ts for the test split), dataset.json, splits_final.json."""
    from datakit.export.nnunet import export_nnunet as run
    from datakit.progress import progress_bar

    names = [c.strip() for c in channel_names.split(",")] if channel_names else None
    with progress_bar() as bar:  # on a terminal only, as convert's
        task = bar.add_task("exporting cases", total=None)
        rep = run(store, out_dir, dataset_id, name, labels=labels, fmt=fmt, channel_names=names, overwrite=overwrite,
                  preprocessed=preprocessed, progress=lambda done, total: bar.update(task, completed=done, total=total))
    for note in rep.notes:
        typer.echo(note, err=True)
    typer.echo(rep.summary())
