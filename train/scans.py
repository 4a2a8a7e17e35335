"""Prediction on new scans (``train predict --input FILE_OR_FOLDER``): the checkpoint's plan applied
as ``datakit convert`` applies it, predicted, post-processed, and put back on each scan's own grid.

- NIfTI volumes (``.nii``, ``.nii.gz``), for checkpoints trained on an ACDC store: read with
  datakit's reader (:func:`datakit.io.nifti.load_nifti`), normalised, resampled and cropped/padded
  by :func:`datakit.sources.acdc.stored_slices` (the function ``convert acdc`` uses, so the network
  sees the bytes a store would hold; float16 stores' rounding too), predicted slice by slice,
  post-processed in 3D, resampled back to the source grid (nearest: each source voxel takes the
  label of the stored pixel holding its centre, :func:`train.predict_io.to_source_grid`) and
  written as ``<name>_pred.nii.gz`` (uint8) with the source's affine and header.
- 2D images (PNG, JPEG, TIFF, BMP), for checkpoints trained on a folder store: read with
  :func:`datakit.io.raster.read_array`, made the store's channels (:func:`datakit.sources.folder.image_channels`),
  normalised and letterboxed by :func:`datakit.prepare.prepare_2d`, predicted, post-processed in 2D,
  put back on the image's own pixels (:func:`datakit.geometry.letterbox_index`) and written as a
  palette PNG ``<name>_pred.png`` (pixel value = class).

A folder is searched recursively; label files of the layouts datakit converts (``*_gt``,
``*_scribble``) and ACDC's 4D cine files (``*_4d``) are left out, and the output says how many.
Every file is written through :func:`datakit.safe_io.write_file` (temporary + rename).
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datakit.errors import DatakitError
from train.plan import norm_method as plan_norm_method

NIFTI = (".nii", ".nii.gz")
IMAGES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
SKIPPED_SUFFIXES = ("_gt", "_scribble", "_4d")


def _stem(path: Path) -> str:
    name = path.name
    for ext in (*NIFTI, *IMAGES):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return path.stem


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(NIFTI):
        return "nifti"
    if name.endswith(IMAGES):
        return "image"
    return None


def find_inputs(root: Path, log: Callable[[str], None]) -> list[Path]:
    """The scans to predict: ``root`` itself, or the NIfTI / image files below it (sorted)."""
    if not root.exists():
        raise DatakitError("no such file or folder", root)
    if root.is_file():
        if _kind(root) is None:
            raise DatakitError(f"not a scan train predict reads (NIfTI {', '.join(NIFTI)} or an image "
                               f"{', '.join(IMAGES)})", root)
        return [root]
    found = sorted(p for p in root.rglob("*") if p.is_file() and _kind(p) is not None)
    files = [p for p in found if not _stem(p).endswith(SKIPPED_SUFFIXES)]
    if len(files) < len(found):
        log(f"note: left out {len(found) - len(files)} label or cine file(s) ({', '.join(SKIPPED_SUFFIXES)})")
    if not files:
        raise DatakitError(f"no NIfTI or image files in the folder ({', '.join(NIFTI + IMAGES)})", root)
    return files


def check_plan(plan: dict[str, Any] | None, kinds: set[str], checkpoint: Path) -> None:
    """Refuse, before anything is written, scans the checkpoint's plan cannot prepare."""
    if plan is None:
        raise DatakitError("the checkpoint records no plan (written before plans were), so new scans cannot be "
                           "prepared as its store was; record it with train postprocess --checkpoint CK --store "
                           "TRAINING_STORE --add-plan, or predict through a store (--store)", checkpoint)
    plan_norm_method(plan["normalization"])
    source = plan["source"]
    if "nifti" in kinds and not (source == "acdc" and plan["spacing_mm"] is not None):
        raise DatakitError(f"NIfTI volumes are prepared as convert acdc prepares them, but the checkpoint was "
                           f"trained on a {source!r} store; convert the scans with datakit convert and predict "
                           f"with --store", checkpoint)
    if "image" in kinds and not source.startswith("folder:"):
        raise DatakitError(f"2D images are prepared as convert folder prepares them, but the checkpoint was "
                           f"trained on a {source!r} store; convert the images with datakit convert and predict "
                           f"with --store", checkpoint)


def _nifti_bytes(img: Any, gz: bool) -> bytes:
    raw = img.to_bytes()
    return gzip.compress(raw, compresslevel=6, mtime=0) if gz else raw


def predict_nifti(model: torch.nn.Module, plan: dict[str, Any], path: Path, device: torch.device,
                  postprocess: Sequence[int] | None) -> tuple[np.ndarray, Any]:
    """(labels on the source grid (H, W, Z) uint8, the NIfTI image to write) of one volume."""
    import nibabel as nib

    from datakit.io.nifti import load_nifti
    from datakit.safe_io import check_spacing
    from datakit.sources.acdc import stored_slices
    from train.inference import predict_images
    from train.postprocess import keep_largest
    from train.predict_io import to_source_grid

    vol = load_nifti(path)
    volume = vol.data.astype(np.float32, copy=False)
    if volume.ndim == 2:
        volume = volume[..., None]
    if volume.ndim != 3:
        raise DatakitError(f"expected a 3D volume, found shape {volume.shape} (a 4D cine: pass its frames)", path)
    zooms = [float(z) for z in vol.zooms[:3]] + [1.0] * (3 - len(vol.zooms[:3]))
    check_spacing(zooms, path, "voxel spacing")
    sp = float(plan["spacing_mm"][0])
    _, images = stored_slices(volume, zooms, sp, int(plan["size"][0]), plan_norm_method(plan["normalization"]))
    images = images[:, None].astype(plan["image_dtype"], copy=False)  # a float16 store's rounding
    pred = predict_images(model, images, len(images), device)
    if postprocess:
        pred = keep_largest(pred, (zooms[2], sp, sp), postprocess)
    data = to_source_grid(pred, volume.shape[:2], (zooms[0], zooms[1]), (sp, sp)).reshape(vol.data.shape)
    src = nib.load(path)  # the header only (the voxels were read above by datakit's reader)
    out = type(src)(data.astype(np.uint8), vol.affine, src.header.copy())
    out.set_data_dtype(np.uint8)
    out.header.set_slope_inter(1, 0)
    return data, out


def predict_image(model: torch.nn.Module, plan: dict[str, Any], path: Path, device: torch.device,
                  postprocess: Sequence[int] | None) -> np.ndarray:
    """Labels (H, W) uint8 on the image's own pixels."""
    from datakit.geometry import letterbox_index
    from datakit.io.raster import read_array
    from datakit.prepare import prepare_2d
    from datakit.sources.folder import image_channels
    from train.inference import predict_images
    from train.postprocess import keep_largest

    raw = read_array(path)
    size = int(plan["size"][0])
    prepared = prepare_2d(image_channels(raw, int(plan["channels"])), size, plan_norm_method(plan["normalization"]))
    x = prepared.image[None].astype(plan["image_dtype"], copy=False)
    pred = predict_images(model, x, 1, device)[0]
    if postprocess:
        pred = keep_largest(pred, (1.0, 1.0), postprocess)
    h, w = raw.shape[:2]
    oy, ox = prepared.offset
    nh, nw = max(1, round(h * prepared.scale)), max(1, round(w * prepared.scale))
    rows = letterbox_index(h, prepared.scale, oy, nh)
    cols = letterbox_index(w, prepared.scale, ox, nw)
    return np.ascontiguousarray(pred[rows[:, None], cols[None, :]])


def predict_scans(model: torch.nn.Module, ck: dict[str, Any], checkpoint: Path, inputs: list[Path], out: Path,
                  device: torch.device, postprocess: Sequence[int] | None, overwrite: bool,
                  progress: Callable[[int], None] | None = None) -> list[Path]:
    """Predict every scan of ``inputs`` into ``out``; return the files written."""
    from PIL import Image

    from datakit.safe_io import os_error, write_file
    from train.predict_io import PALETTE

    plan = ck.get("plan")
    check_plan(plan, {_kind(p) for p in inputs} - {None}, checkpoint)  # type: ignore[arg-type]
    names = [_stem(p) for p in inputs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DatakitError(f"two inputs would write the same prediction {dup[0]}_pred: give them one at a time", out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise os_error(e, out) from None
    written = []
    was_training = model.training
    model.eval()
    try:
        for path, name in zip(inputs, names, strict=True):
            if _kind(path) == "nifti":
                _, img = predict_nifti(model, plan, path, device, postprocess)  # type: ignore[arg-type]
                gz = path.name.lower().endswith(".gz")
                target = out / f"{name}_pred.nii{'.gz' if gz else ''}"
                write_file(target, _nifti_bytes(img, gz), overwrite)
            else:
                lab = predict_image(model, plan, path, device, postprocess)  # type: ignore[arg-type]
                im = Image.fromarray(lab, mode="P")
                im.putpalette(PALETTE + [255, 255, 255] * (256 - len(PALETTE) // 3))
                buf = io.BytesIO()
                im.save(buf, format="PNG")
                target = out / f"{name}_pred.png"
                write_file(target, buf.getvalue(), overwrite)
            written.append(target)
            if progress is not None:
                progress(1)
    finally:
        model.train(was_training)
    return written
