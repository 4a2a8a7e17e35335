"""Writing predictions: palette PNGs per slice, or NIfTI volumes.

``--format auto`` writes NIfTI for slices of volumes with a source geometry (``meta/source_shape``
and ``meta/source_spacing``, e.g. ACDC) and PNG for everything else: 2D sources (folder, Unity,
CAMUS) and merged stores that lost the geometry. NIfTI is refused, with the reason, where there is
no geometry to write: the source grid needs ``meta/source_shape`` and ``meta/source_spacing``, the
stored grid a finite ``meta/spacing``.

NIfTI on the SOURCE grid (default): voxel for voxel with the source volume's array (rows, columns,
slices): the store's resample + centre crop/pad is inverted with datakit.geometry's conventions
(stored pixel o of the resampled axis has its centre at source coordinate (o + 0.5) * target / s
- 0.5; crop/pad offsets (n_res - size) // 2 or (size - n_res) // 2), each source pixel taking the
label of the stored pixel that holds its centre (nearest; background where the store had cropped
the field of view away). The affine is the source image's own (``meta/source_affine``), so a viewer
that overlays by world coordinates puts the prediction exactly on the image. ``grid="stored"``
writes the stored grid (e.g. 1.51 mm, store size) with the source's directions and an origin moved
by the crop (:func:`datakit.geometry.stored_affine`). A store written before ``meta/source_affine``
existed gets diagonal affines (spacing only), and the output says so.

File names: patient_frame_view (``_sNN`` per slice for PNG), the sample index for 2D samples, and
``-2``, ``-3``, ... where two volumes would still share a name (a merged store's datasets).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from datakit.errors import DatakitError
from datakit.geometry import shifted_affine, stored_affine
from datakit.store import Store
from train.inference import iter_predictions
from train.metrics import Volume

# Background black, then distinct colours; pixel values stay the class indices (palette PNG).
PALETTE = [0, 0, 0, 230, 25, 75, 60, 180, 75, 255, 225, 25, 0, 130, 200, 245, 130, 48, 145, 30, 180,
           70, 240, 240, 240, 50, 230, 210, 245, 60]


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", s).strip("-") or "x"


def _unique_stem(store: Store, vol: Volume, used: set[str]) -> str:
    """File stem of one volume, unique in the output: patient_frame_view, plus the sample index for a
    2D sample (a volume of its own), then -2, -3, ... on a clash (e.g. two datasets of a merged store
    sharing patient ids), so no volume overwrites another."""
    base = "_".join(_safe(p) for p in (vol.patient, vol.frame, vol.view) if p)
    first = int(vol.indices[0])
    if int(store.meta["slice"][first]) < 0:
        base = f"{base}_{first:06d}"
    name, k = base, 1
    while name in used:
        k += 1
        name = f"{base}-{k}"
    used.add(name)
    return name


def source_index(n_src: int, src_spacing: float, target: float, size: int) -> np.ndarray:
    """Stored pixel index holding each source pixel's centre along one axis; -1 where cropped away."""
    n_res = max(1, int(round(n_src * src_spacing / target)))
    # resampled pixel o covers [o, o + 1) in resampled units; source centre i sits at (i + 0.5) s / t
    o = np.clip(np.floor((np.arange(n_src) + 0.5) * src_spacing / target).astype(np.int64), 0, n_res - 1)
    o = o - (n_res - size) // 2 if n_res >= size else o + (size - n_res) // 2
    return np.where((o >= 0) & (o < size), o, -1)


def to_source_grid(pred: np.ndarray, source_shape: tuple[int, int], source_spacing: tuple[float, float],
                   target: tuple[float, float]) -> np.ndarray:
    """(Z, H, W) stored labels -> (H0, W0, Z) labels on the source grid (0 outside the stored view)."""
    ri = source_index(int(source_shape[0]), float(source_spacing[0]), float(target[0]), pred.shape[1])
    ci = source_index(int(source_shape[1]), float(source_spacing[1]), float(target[1]), pred.shape[2])
    out = pred[:, np.clip(ri, 0, None)[:, None], np.clip(ci, 0, None)[None, :]]
    out[:, (ri < 0)[:, None] | (ci < 0)[None, :]] = 0
    return np.ascontiguousarray(np.transpose(out, (1, 2, 0)))


def auto_format(store: Store, indices: np.ndarray) -> str:
    """``--format auto``: NIfTI for slices of volumes with a source geometry, PNG otherwise."""
    meta = store.meta
    volumetric = bool((np.asarray(meta["slice"])[np.asarray(indices, np.int64)] >= 0).any())
    return "nifti" if volumetric and {"source_shape", "source_spacing"} <= set(meta) else "png"


def check_nifti(store: Store, indices: np.ndarray, grid: str) -> None:
    """Refuse NIfTI, with the reason, where the samples have no geometry to write one with."""
    meta = store.meta
    if grid == "source":
        missing = [k for k in ("source_shape", "source_spacing") if k not in meta]
        if missing:
            raise DatakitError(f"--format nifti: the store has no meta/{' nor meta/'.join(missing)} (a 2D source "
                               f"such as a folder or Unity, or a merge of stores that not all had it), so there "
                               f"is no source grid to write; use --format png (or --grid stored where the "
                               f"store's pixels have a spacing)", store.path)
        spacing = np.asarray(meta["source_spacing"], np.float64)[np.asarray(indices, np.int64)]
    else:
        spacing = np.asarray(meta["spacing"], np.float64)[np.asarray(indices, np.int64)]
    if not np.isfinite(spacing).all() or (spacing <= 0).any():
        raise DatakitError(f"--format nifti --grid {grid}: some samples have no pixel spacing (NaN: e.g. "
                           f"Unity PNGs), so a NIfTI would have no geometry; use --format png", store.path)


def nifti_affine(store: Store, vol: Volume, grid: str) -> np.ndarray | None:
    """World affine of one predicted volume on ``grid``; None where the store has no source affine."""
    meta = store.meta
    if "source_affine" not in meta:
        return None
    first = int(vol.indices[0])
    z0 = max(int(meta["slice"][first]), 0)
    src = np.asarray(meta["source_affine"][first], np.float64)
    if grid == "source":
        return shifted_affine(src, z0)
    return stored_affine(src, tuple(meta["source_shape"][first]), tuple(meta["source_spacing"][first]),
                         tuple(float(x) for x in meta["spacing"][first]), store.image_size, z0)


def write_predictions(model: torch.nn.Module, store: Store, indices: np.ndarray, device: torch.device,
                      out: Path, fmt: str, grid: str = "source",
                      keep: set[int] | None = None, progress: Callable[[int], None] | None = None,
                      log=None, postprocess: Sequence[int] | None = None) -> tuple[int, dict[int, np.ndarray]]:
    """Write the predictions; return the number of files and the stored-grid predictions of ``keep``.
    ``progress(slices)`` after each volume; ``log`` receives notes (e.g. a diagonal affine);
    ``postprocess``: classes whose largest component alone is kept, per volume on the stored grid."""
    from PIL import Image

    from train.postprocess import keep_largest

    if fmt == "nifti":
        check_nifti(store, indices, grid)
        if "source_affine" not in store.meta and log is not None:
            log("note: the store has no meta/source_affine (written before it existed, or a source without "
                "one): NIfTI affines are diagonal (spacing only), not in the source's world frame")
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    kept: dict[int, np.ndarray] = {}
    used: set[str] = set()
    for vol, pred in iter_predictions(model, store, indices, device, progress):
        if postprocess:
            pred = keep_largest(pred, vol.spacing, postprocess)
        for i, lab in zip(vol.indices, pred, strict=True):
            if keep is not None and int(i) in keep:
                kept[int(i)] = lab
        stem = _unique_stem(store, vol, used)
        if fmt == "png":
            for i, lab in zip(vol.indices, pred, strict=True):
                sl = int(store.meta["slice"][i])
                img = Image.fromarray(lab, mode="P")
                img.putpalette(PALETTE + [255, 255, 255] * (256 - len(PALETTE) // 3))
                name = f"{stem}_s{sl:02d}.png" if sl >= 0 else f"{stem}.png"  # 2D: the stem has the index
                img.save(out / name)
                written += 1
        else:
            import nibabel as nib

            first = vol.indices[0]
            row, col = (float(x) for x in store.meta["spacing"][first])
            dz = float(store.meta["slice_spacing"][first])
            dz = dz if np.isfinite(dz) else 1.0
            affine = nifti_affine(store, vol, grid)
            if grid == "source":
                src_sp = tuple(float(x) for x in store.meta["source_spacing"][first])
                data = to_source_grid(pred, tuple(store.meta["source_shape"][first]), src_sp, (row, col))
                affine = np.diag([src_sp[0], src_sp[1], dz, 1.0]) if affine is None else affine
            else:
                data = np.ascontiguousarray(np.transpose(pred, (1, 2, 0)))  # (rows, cols, slices)
                affine = np.diag([row, col, dz, 1.0]) if affine is None else affine
            img = nib.Nifti1Image(data, affine)
            img.set_qform(affine, code=1)  # both forms: readers that use only the qform agree
            img.set_sform(affine, code=1)
            img.header.set_xyzt_units("mm")
            nib.save(img, out / f"{stem}_pred.nii.gz")
            written += 1
    return written, kept
