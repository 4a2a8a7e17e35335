"""NIfTI reading with a fast gzip decoder and errors that name the file."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from datakit.errors import DatakitError

try:  # ISA-L inflates several times faster than zlib
    from isal import igzip as _gzip
except ImportError:  # pragma: no cover
    import gzip as _gzip


def load_nifti(path: Path) -> nib.Nifti1Image:
    """Decode a .nii or .nii.gz fully into memory; raise DatakitError naming the file if unreadable."""
    try:
        raw = path.read_bytes()
        if path.name.endswith(".gz"):
            raw = _gzip.decompress(raw)
        img = nib.Nifti1Image.from_bytes(raw)
        _ = img.dataobj[(0,) * len(img.shape)] if img.shape else None  # touches the data
        return img
    except FileNotFoundError:
        raise DatakitError("file not found", path) from None
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file for the user
        reason = str(e) or type(e).__name__
        raise DatakitError(f"unreadable NIfTI ({reason})", path) from None


def nifti_array(img: nib.Nifti1Image, path: Path, dtype: type | None = None) -> np.ndarray:
    try:
        a = np.asarray(img.dataobj)
    except Exception as e:  # noqa: BLE001
        raise DatakitError(f"unreadable NIfTI data ({e})", path) from None
    return a.astype(dtype, copy=False) if dtype is not None else a
