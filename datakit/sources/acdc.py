"""ACDC cine-MRI (short axis): ED and ES frames with `_gt` masks, optional Valvano scribbles.

Layout (docs/acdc.md): ``<root>/{training,testing}/patientXXX/`` (older copies under
``database/``); the root, ``training/``, or any folder of patient folders is accepted.
Each slice of each ED/ES volume becomes one sample, resampled in-plane to ``spacing`` mm and centre
cropped/padded to ``size``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import scipy.sparse  # noqa: F401 - SliceGrid needs it; imported before the workers fork, not in each

from datakit.constants import IGNORE
from datakit.errors import DatakitError
from datakit.geometry import SliceGrid
from datakit.io.nifti import Volume, load_nifti
from datakit.normalize import fit_normalizer, normalizer_name
from datakit.resources import read_manifest
from datakit.safe_io import check_spacing
from datakit.sample import Sample, checked_labels, label_states_of_stack
from datakit.sources.base import ItemResult, SourceBase, check_size, find_patient_folders, source_path
from datakit.sources.cfg import cfg_frame, cfg_number, read_cfg

PATIENT_DIR = re.compile(r"^patient\d{3}$")
VALVANO_UNLABELLED = 4


def find_patient_dirs(root: Path) -> list[Path]:
    """Patient folders under an ACDC root, its training/ or testing/, or a folder of patients."""
    return find_patient_folders(root, PATIENT_DIR, ("training", "testing", "database/training", "database/testing"))


def _number(info: dict[str, str], key: str, path: Path) -> float:
    """A numeric Info.cfg value; NaN when the key is absent (the contract: never invented)."""
    value = cfg_number(info, key, path)
    return math.nan if value is None else value


@dataclass(frozen=True)
class AcdcItem:
    patient: str
    folder: Path


@dataclass
class AcdcSource(SourceBase):
    root: Path
    scribbles: str | Path = "auto"  # "auto", "none", or a folder of *_scribble.nii.gz
    spacing: float = 1.51
    size: int = 224
    norm: str = "percentile-iqr"
    name: str = "acdc"
    channels: int = 1
    stratify_column: str | None = "group"
    keypoint_names: list[str] | None = None
    releases_gil: ClassVar[bool] = True  # decode/resample run in C: the pipeline may use threads

    def __post_init__(self) -> None:
        manifest = read_manifest("acdc.json")
        self.classes = manifest["classes"]
        self.image_size = (self.size, self.size)
        self.normalization = normalizer_name(self.norm)
        check_size(self.size)
        if self.spacing <= 0:
            raise DatakitError(f"--spacing must be positive, not {self.spacing}")
        if isinstance(self.scribbles, Path) and not self.scribbles.is_dir():
            raise DatakitError("scribble folder not found", self.scribbles)

    def default_split(self) -> str:
        return "stratified"

    def items(self) -> list[AcdcItem]:
        return [AcdcItem(d.name, d) for d in find_patient_dirs(self.root)]

    # -- one patient ----------------------------------------------------------------------------
    def read(self, item: AcdcItem) -> ItemResult:
        info_path = item.folder / "Info.cfg"
        info = read_cfg(info_path)  # Key: Value lines, no section header
        ed = cfg_frame(info, "ED", info_path)
        es = cfg_frame(info, "ES", info_path)
        samples: list[Sample] = []
        for label, number in (("ED", ed), ("ES", es)):
            samples += self._read_frame(item, label, number)
        group = info.get("Group", "")
        row = {"id": item.patient, "group": group,
               "height": _number(info, "Height", info_path), "weight": _number(info, "Weight", info_path),
               "nb_frames": _number(info, "NbFrame", info_path), "ed_frame": float(ed), "es_frame": float(es)}
        return ItemResult(samples, row)

    def _scribble_path(self, item: AcdcItem, stem: str) -> Path | None:
        if self.scribbles == "none":
            return None
        if self.scribbles == "auto":
            p = item.folder / f"{stem}_scribble.nii.gz"
            return p if p.exists() else None
        folder = Path(self.scribbles)
        for p in (folder / f"{stem}_scribble.nii.gz", folder / item.patient / f"{stem}_scribble.nii.gz"):
            if p.exists():
                return p
        return None

    def _read_frame(self, item: AcdcItem, label: str, number: int) -> list[Sample]:
        stem = f"{item.patient}_frame{number:02d}"
        image_path = item.folder / f"{stem}.nii.gz"
        gt_path = item.folder / f"{stem}_gt.nii.gz"
        for p in (image_path, gt_path):
            if not p.exists():
                raise DatakitError(f"missing {label} frame file (Info.cfg says {label}: {number})", p)
        img = load_nifti(image_path)
        gt = load_nifti(gt_path)
        volume = img.data.astype(np.float32, copy=False)
        mask = gt.data
        _check_same_grid(img, gt, gt_path)
        if volume.ndim != 3:
            raise DatakitError(f"expected a 3D volume, found shape {volume.shape}", image_path)
        mask = checked_labels(mask, gt_path, len(self.classes))
        scribble = None
        scribble_path = self._scribble_path(item, stem)
        if scribble_path is not None:
            sc = load_nifti(scribble_path)
            scribble = sc.data
            _check_same_grid(img, sc, scribble_path)
            if scribble.min() < 0 or scribble.max() > VALVANO_UNLABELLED:
                raise DatakitError(f"scribble values {np.unique(scribble).tolist()} outside 0-4 "
                                   f"(4 = unlabelled)", scribble_path)
            scribble = scribble.astype(np.uint8)
            scribble[scribble == VALVANO_UNLABELLED] = IGNORE
        zooms = [float(z) for z in img.zooms[:3]]
        check_spacing(zooms, image_path, "voxel spacing")  # finite, in a sane range: pixdim 0 or 1e6 refused
        grid, images = stored_slices(volume, zooms, self.spacing, self.size, self.norm)
        masks = grid.slices_labels(np.moveaxis(mask, -1, 0), 0)
        scribbles = grid.slices_labels(np.moveaxis(scribble, -1, 0), IGNORE) if scribble is not None else None
        states = label_states_of_stack(masks, len(self.classes))
        extra = {"source_shape": np.array(volume.shape[:2], np.int32),
                 "source_spacing": np.array(zooms[:2], np.float32),
                 "source_affine": np.asarray(img.affine, np.float64)}  # voxel (row, col, slice) -> world mm
        source = source_path(image_path, self.root)
        out = []
        for z in range(volume.shape[2]):
            m = masks[z]
            sc2 = scribbles[z] if scribbles is not None else np.full(m.shape, IGNORE, np.uint8)
            out.append(Sample(
                image=images[z][None], mask=m, scribble=sc2,
                label_state=states[z],
                dataset=self.name, patient=item.patient, frame=label, view="SAX", slice=z,
                spacing=(self.spacing, self.spacing), slice_spacing=zooms[2],
                source=source,
                scribble_source="manual" if scribble is not None else "none", extra=extra,
            ))
        return out


def stored_slices(volume: np.ndarray, zooms: Sequence[float], spacing: float, size: int,
                  norm: str) -> tuple[SliceGrid, np.ndarray]:
    """The stored images (Z, size, size) float32 of one (H, W, Z) volume: normalised with statistics of the whole
    volume (``--norm``), resampled in-plane to ``spacing`` mm (Keys cubic), centre cropped/padded to
    ``size``; and the grid, which the labels share. ``convert`` and ``train predict --input`` both use it."""
    normalizer = fit_normalizer(norm, volume)
    grid = SliceGrid(volume.shape[:2], (zooms[0], zooms[1]), spacing, (size, size))
    # (H, W, Z) -> (Z, H, W) as views: each slice of a NIfTI volume is read in place (column-major)
    # and comes out as one C-order sample; padding takes the raw intensity that normalises to
    # the background level
    return grid, normalizer.apply(grid.slices_image(np.moveaxis(volume, -1, 0), normalizer.raw_background))


def _check_same_grid(img: Volume, labels: Volume, lab_path: Path) -> None:
    if labels.shape != img.shape:
        raise DatakitError(f"shape {labels.shape} differs from its image's {img.shape}", lab_path)
    if not np.allclose(labels.affine, img.affine, atol=1e-3, rtol=1e-4):
        raise DatakitError("affine differs from its image's (the label is on another grid)", lab_path)
