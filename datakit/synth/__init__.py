"""Phantom datasets in each source's exact layout (the embedded defaults of demos and tests)."""

from __future__ import annotations

from pathlib import Path

from datakit.errors import DatakitError


def check_output_folder(out: Path, overwrite: bool) -> None:
    """``out`` may receive a phantom dataset: absent, empty, or non-empty with --overwrite."""
    if out.exists() and not out.is_dir():
        raise DatakitError("is not a folder", out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise DatakitError("folder exists and is not empty; pass --overwrite to write into it", out)
