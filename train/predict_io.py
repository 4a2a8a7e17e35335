"""Writing predictions: palette PNGs per slice, or NIfTI volumes on the store's grid.

NIfTI: the prediction is written on the STORED grid (in-plane ``meta/spacing``, e.g. 1.51 mm, centre
cropped/padded to the store size; slices ``meta/slice_spacing`` apart) with the matching diagonal
affine, array axes (row, column, slice). It is not resampled back to the source scanner grid
(meta/source_shape, meta/source_spacing): doing so would re-interpolate labels and is left to the
user, who has both grids in the store.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from datakit.store import Store
from train.inference import iter_predictions

# Background black, then distinct colours; pixel values stay the class indices (palette PNG).
PALETTE = [0, 0, 0, 230, 25, 75, 60, 180, 75, 255, 225, 25, 0, 130, 200, 245, 130, 48, 145, 30, 180,
           70, 240, 240, 240, 50, 230, 210, 245, 60]


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", s).strip("-") or "x"


def write_predictions(model: torch.nn.Module, store: Store, indices: np.ndarray, device: torch.device,
                      out: Path, fmt: str) -> int:
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for vol, pred in iter_predictions(model, store, indices, device):
        stem = "_".join(_safe(p) for p in (vol.patient, vol.frame, vol.view) if p)
        if fmt == "png":
            for i, lab in zip(vol.indices, pred, strict=True):
                sl = int(store.meta["slice"][i])
                img = Image.fromarray(lab, mode="P")
                img.putpalette(PALETTE + [255, 255, 255] * (256 - len(PALETTE) // 3))
                name = f"{stem}_s{sl:02d}.png" if sl >= 0 else f"{stem}_{int(i):06d}.png"
                img.save(out / name)
                written += 1
        else:
            import nibabel as nib

            row, col = (float(x) for x in store.meta["spacing"][vol.indices[0]])
            dz = float(store.meta["slice_spacing"][vol.indices[0]])
            affine = np.diag([row, col, dz if np.isfinite(dz) else 1.0, 1.0])
            data = np.ascontiguousarray(np.transpose(pred, (1, 2, 0)))  # (rows, cols, slices)
            nib.save(nib.Nifti1Image(data, affine), out / f"{stem}_pred.nii.gz")
            written += 1
    return written
