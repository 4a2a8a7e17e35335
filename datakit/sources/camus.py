"""CAMUS 2D echocardiography (apical 2- and 4-chamber views), both public releases, via SimpleITK.

Layouts (docs/camus.md): the NIfTI release ``database_nifti/patientNNNN/`` with
``database_split/``, and the older MHD/RAW release ``{training,testing}/patientNNNN/`` with
``listSubGroups/``. SRC may be a release root, ``database_nifti/``, ``training/``, a folder of
patient folders or one patient folder; the format is detected from the files.

Each image is resized to ``size`` x ``size`` as SimpleITK's array order gives it (sector apex at
the top); ``meta/spacing`` is the true (row, col) spacing of the stored pixels, from each file's
header, so areas in mm^2 survive the resize. Intensities are normalised per stored image.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from datakit.choices import CAMUS_FORMATS, CAMUS_FRAMES
from datakit.constants import IGNORE
from datakit.errors import DatakitError
from datakit.geometry import SliceGrid
from datakit.io.sitk import read_image
from datakit.normalize import fit_normalizer, normalizer_name
from datakit.resources import read_manifest
from datakit.safe_io import read_lines
from datakit.sample import Sample, checked_labels, label_state_from_mask
from datakit.sources.base import ItemResult, SourceBase, check_size, find_patient_folders, source_path
from datakit.sources.camus_info import QUALITY_RANK, ViewInfo, parse_info
from datakit.splits import SplitResult, make_splits

PATIENT_DIR = re.compile(r"^patient\d{4}$")
EXT = {"nifti": ".nii.gz", "mhd": ".mhd"}
SEQUENCE = {"nifti": "half_sequence", "mhd": "sequence"}
VIEWS = ("2CH", "4CH")


def find_patient_dirs(root: Path) -> list[Path]:
    """Patient folders under a release root, database_nifti/, training/ + testing/, or a folder of them."""
    return find_patient_folders(root, PATIENT_DIR, ("database_nifti", "training", "testing"))


def detect_format(dirs: list[Path]) -> str:
    """``nifti`` or ``mhd`` from the image files of the first patient folders."""
    for d in dirs[:5]:
        names = [p.name for p in d.iterdir()]
        nifti = any(n.endswith(".nii.gz") or n.endswith(".nii") for n in names)
        mhd = any(n.endswith(".mhd") for n in names)
        if nifti and mhd:
            raise DatakitError("holds both .nii.gz and .mhd images; choose one with --format", d)
        if nifti or mhd:
            return "nifti" if nifti else "mhd"
    raise DatakitError("no .nii.gz or .mhd image in the first patient folders", dirs[0] if dirs else None)


def _split_roots(root: Path) -> list[Path]:
    """Where split folders may sit: the root, or above it when SRC is a sub-folder of a release; and
    ``training/`` of a release root (the MHD release may keep ``listSubGroups/`` there)."""
    roots = [root]
    if PATIENT_DIR.match(root.name):
        roots += [root.parent, root.parent.parent]
    elif root.name in ("database_nifti", "training", "testing"):
        roots.append(root.parent)
    roots += [r / "training" for r in roots if r.name not in ("training", "testing") and (r / "training").is_dir()]
    return list(dict.fromkeys(roots))


@dataclass(frozen=True)
class OfficialLists:
    """The split lists a release ships: split name -> patient ids, and the files they came from."""

    name: str  # recorded as method "official:<name>"
    lists: dict[str, list[str]]
    files: dict[str, Path]

    @property
    def folder(self) -> Path:
        return next(iter(self.files.values())).parent


def _official(name: str, files: dict[str, Path]) -> OfficialLists:
    lists = {split: read_lines(p, "official split list") for split, p in files.items()}  # regular files only
    seen: dict[str, str] = {}
    for split, ids in lists.items():  # checked here, where the file can be named
        for pid in ids:
            if pid in seen and seen[pid] != split:
                raise DatakitError(f"{pid} is also listed in {files[seen[pid]].name}", files[split])
            seen[pid] = split
    return OfficialLists(name, lists, files)


def find_official_split(root: Path, fold: int | None) -> OfficialLists | None:
    """``database_split/`` (train / valid / test) or ``listSubGroups/`` (10 folds, ``fold`` 1-10)."""
    names = {"train": "training", "valid": "validation", "test": "testing"}
    for base in _split_roots(root):
        d = base / "database_split"
        if d.is_dir():
            if fold is not None:
                raise DatakitError("--fold needs the 10-fold lists of listSubGroups/; this release has "
                                   "one official split", d)
            return _official("database_split", {k: d / f"subgroup_{v}.txt" for k, v in names.items()})
        d = base / "listSubGroups"
        if d.is_dir():
            k = 1 if fold is None else fold
            files = {s: d / f"subGroup{k}_{v}.txt" for s, v in names.items()}
            if not any(p.exists() for p in files.values()):
                raise DatakitError(f"no lists for fold {k} (subGroup{k}_*.txt)", d)
            return _official(f"listSubGroups/subGroup{k}", files)
    if fold is not None:
        raise DatakitError("--fold needs listSubGroups/ beside the patients; none found", root)
    return None


def parse_views(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    parts = [v.strip().upper() for v in (text.split(",") if isinstance(text, str) else text) if v.strip()]
    bad = [v for v in parts if v not in VIEWS]
    if bad or not parts:
        raise DatakitError(f"--views must be a comma-separated subset of {','.join(VIEWS)}, not {text!r}")
    return tuple(dict.fromkeys(parts))


@dataclass(frozen=True)
class CamusItem:
    patient: str
    folder: Path


@dataclass
class _Frames:
    """The frames of one view to store: images (T, H, W), masks (None: unknown), their labels."""

    images: np.ndarray
    masks: list[np.ndarray | None]
    names: list[str]
    spacing: tuple[float, float]
    sources: list[Path]  # the file each frame comes from (ED and ES are two files)


@dataclass
class CamusSource(SourceBase):
    root: Path
    format: str = "auto"  # auto, nifti, mhd
    views: tuple[str, ...] = VIEWS
    frames: str = "ed-es"  # or "sequence"
    size: int = 256
    norm: str = "zscore"
    fold: int | None = None  # listSubGroups fold, 1-10
    name: str = "camus"
    channels: int = 1
    stratify_column: str | None = "image_quality"
    official_split_from: ClassVar[str] = "database_split/ or listSubGroups/ beside the patients"
    keypoint_names: list[str] | None = None
    official_lists: OfficialLists | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.classes = read_manifest("camus.json")["classes"]
        self.views = parse_views(self.views)
        if self.frames not in CAMUS_FRAMES:
            raise DatakitError(f"--frames must be ed-es or sequence, not {self.frames!r}")
        if self.format not in CAMUS_FORMATS:
            raise DatakitError(f"--format must be auto, nifti or mhd, not {self.format!r}")
        check_size(self.size)
        self.image_size = (self.size, self.size)
        self.normalization = f"{normalizer_name(self.norm)} per image"
        self._dirs = find_patient_dirs(self.root)
        if self._dirs and self.format == "auto":
            self.format = detect_format(self._dirs)
        self.official_lists = find_official_split(self.root, self.fold)
        import SimpleITK  # noqa: F401  - once here, so forked workers inherit it instead of each importing it

    def default_split(self) -> str:
        return "official" if self.official_lists is not None else "stratified"

    def split_note(self, spec: str) -> str:
        """Which split is used and why: said in the output and kept in the store's notes."""
        lists = self.official_lists
        if lists is None:
            looked = ", ".join(str(r) for r in _split_roots(self.root))
            column = spec.split(":", 1)[1] if spec.startswith("stratified:") else self.stratify_column
            what = f"stratified on {column}" if spec.startswith("stratified") else spec
            return f"split: {what}: no database_split/ or listSubGroups/ found (looked in {looked})"
        if spec != "official":
            return f"split: {spec} as asked; the official lists in {lists.folder} are not used"
        fold = "" if lists.name == "database_split" else \
            f" (fold {self.fold or 1}{'' if self.fold else ', the default; --fold K for another'})"
        return f"split: official {lists.name}{fold}, from {lists.folder}"

    def official_split(self, patient_ids: list[str]) -> SplitResult:
        """``--split official``: database_split/ or a listSubGroups/ fold, checked like a split file."""
        lists = self.official_lists
        return make_splits("official", patient_ids, official=lists.lists if lists else None,
                           official_name=lists.name if lists else self.name)

    def items(self) -> list[CamusItem]:
        seen: dict[str, Path] = {}
        for d in self._dirs:
            if d.name in seen:
                raise DatakitError(f"patient {d.name} found twice (also in {seen[d.name]}): convert one "
                                   f"folder at a time, e.g. SRC = {d.parent}", d)
            seen[d.name] = d
        return [CamusItem(d.name, d) for d in self._dirs]

    # -- one patient ----------------------------------------------------------------------------
    def read(self, item: CamusItem) -> ItemResult:
        ext = EXT[self.format]
        labelled = any(item.folder.glob(f"{item.patient}_*_gt{ext}"))
        warnings = [] if labelled else [f"{item.patient}: no ground truth (_gt) files: masks unknown"]
        samples: list[Sample] = []
        infos: dict[str, ViewInfo] = {}
        for view in self.views:
            info = parse_info(item.folder / f"Info_{view}.cfg")
            infos[view] = info
            frames = (self._ed_es if self.frames == "ed-es" else self._sequence)(item, view, info, labelled,
                                                                                warnings)
            samples += self._samples(item, view, frames)
        return ItemResult(samples, self._row(item, infos, warnings), warnings)

    def _path(self, item: CamusItem, view: str, what: str) -> Path:
        return item.folder / f"{item.patient}_{view}_{what}{EXT[self.format]}"

    def _ed_es(self, item: CamusItem, view: str, info: ViewInfo, labelled: bool,
               warnings: list[str]) -> _Frames:
        images, masks, spacing, first = [], [], None, None
        for label in ("ED", "ES"):
            path = self._path(item, view, label)
            if not path.exists():
                raise DatakitError(f"missing {view} {label} image", path)
            image, sp = _image2d(path)
            if spacing is None:
                spacing, first = sp, path
            elif image.shape != images[0].shape or not np.allclose(sp, spacing, rtol=1e-4):
                raise DatakitError(f"geometry {image.shape} at {_mm(sp)} differs from {first.name}'s "
                                   f"{images[0].shape} at {_mm(spacing)}", path)
            images.append(image)
            masks.append(self._gt(self._path(item, view, f"{label}_gt"), image.shape, sp, labelled))
        return _Frames(np.stack(images), masks, ["ED", "ES"], spacing,
                       [self._path(item, view, "ED"), self._path(item, view, "ES")])

    def _sequence(self, item: CamusItem, view: str, info: ViewInfo, labelled: bool,
                  warnings: list[str]) -> _Frames:
        seq = SEQUENCE[self.format]
        path = self._path(item, view, seq)
        if not path.exists():
            raise DatakitError(f"missing {view} {seq.replace('_', ' ')} (needed by --frames sequence)", path)
        images, spacing3 = read_image(path)
        if images.ndim == 2:
            images, spacing3 = images[None], (1.0, *spacing3)
        if images.ndim != 3:
            raise DatakitError(f"expected a 2D+t sequence, found shape {images.shape}", path)
        spacing = _check_spacing(spacing3[1:], path)
        t = images.shape[0]
        for key, number in (("ED", info.ed), ("ES", info.es)):
            if number > t:
                raise DatakitError(f"{key}: {number} is beyond the {t} frames of {path.name}", info.path)
        gt_path = self._path(item, view, f"{seq}_gt")
        masks: list[np.ndarray | None] = [None] * t
        if gt_path.exists():
            gt, gt_spacing = read_image(gt_path)
            gt = checked_labels(gt if gt.ndim == 3 else gt[None], gt_path, len(self.classes))
            _same_grid(gt.shape, gt_spacing[-2:], images.shape, spacing, gt_path, path)
            masks = list(gt)
        elif labelled:
            # no sequence ground truth (the MHD release): ED / ES frames take the ED / ES masks
            for key, number in (("ED", info.ed), ("ES", info.es)):
                masks[number - 1] = self._gt(self._path(item, view, f"{key}_gt"), images.shape[1:], spacing,
                                             True)
            if self.format == "nifti":
                warnings.append(f"{item.patient}: no {gt_path.name}: only the ED and ES frames have masks")
        return _Frames(images, masks, [str(i + 1) for i in range(t)], spacing, [path] * t)

    def _gt(self, path: Path, shape: tuple[int, ...], spacing: tuple[float, float],
            labelled: bool) -> np.ndarray | None:
        if not labelled:
            return None
        if not path.exists():
            raise DatakitError("missing ground truth file (other _gt files of this patient exist)", path)
        mask, sp = _image2d(path)
        _same_grid(mask.shape, sp, shape, spacing, path, None)
        return checked_labels(mask, path, len(self.classes))

    # -- arrays to samples ------------------------------------------------------------------------
    def _samples(self, item: CamusItem, view: str, fr: _Frames) -> list[Sample]:
        t, h, w = fr.images.shape
        s = self.size
        stored = (fr.spacing[0] * h / s, fr.spacing[1] * w / s)  # a square resize keeps the field of view
        grid = SliceGrid((h, w), fr.spacing, stored, (s, s))
        k = len(self.classes)
        extra = {"source_shape": np.array((h, w), np.int32), "source_spacing": np.array(fr.spacing, np.float32)}
        sources = {p: source_path(p, self.root) for p in set(fr.sources)}
        unknown = np.full((s, s), IGNORE, np.uint8)
        out = []
        for i in range(t):  # frame by frame: contiguous 2D resampling beats one strided (H, W, T) pass
            image = grid.image(fr.images[i].astype(np.float32), 0.0)
            # statistics of the stored image itself: exact per-image normalisation, 1/7 of the cost
            norm = fit_normalizer(self.norm, image)
            m = unknown if fr.masks[i] is None else grid.labels(fr.masks[i], 0)
            out.append(Sample(
                image=norm.apply(image)[None], mask=m, scribble=unknown,
                label_state=label_state_from_mask(m, k), dataset=self.name, patient=item.patient,
                frame=fr.names[i], view=view, slice=-1, spacing=stored, source=sources[fr.sources[i]],
                scribble_source="none", extra=extra,
            ))
        return out

    def _row(self, item: CamusItem, infos: dict[str, ViewInfo], warnings: list[str]) -> dict[str, Any]:
        views = list(infos)
        row: dict[str, Any] = {"id": item.patient}
        qualities = [infos[v].image_quality for v in views]
        ranked = [q for q in qualities if q in QUALITY_RANK]
        # one patient-level quality for stratification: the worst view, as the poorer view limits it
        row["image_quality"] = max(ranked, key=QUALITY_RANK.get) if ranked else qualities[0]
        # frame_rate: a patient column as docs/store.md names it (the first view's when views differ;
        # both stay in frame_rate_2ch / frame_rate_4ch)
        for key in ("ef", "age", "sex", "frame_rate"):
            values = [getattr(infos[v], key) for v in views]
            known = [x for x in values if x not in (None, "")]
            if len(set(known)) > 1:
                warnings.append(f"{item.patient}: Info cfg files disagree on {key} "
                                f"({', '.join(f'{v} {x}' for v, x in zip(views, values, strict=True))}); "
                                f"kept {views[values.index(known[0])]}'s")
            row[key] = known[0] if known else ("" if key == "sex" else math.nan)
        for v in VIEWS:  # per-view facts, the same columns whatever --views selects
            info = infos.get(v)
            tag = v.lower()
            row[f"image_quality_{tag}"] = info.image_quality if info else ""
            for key in ("frame_rate", "nb_frames", "ed_frame", "es_frame"):
                value = getattr(info, {"ed_frame": "ed", "es_frame": "es"}.get(key, key)) if info else None
                row[f"{key}_{tag}"] = math.nan if value is None else float(value)  # a number column
        return row



def _mm(spacing: tuple[float, float]) -> str:
    return f"{spacing[0]:.4g} x {spacing[1]:.4g} mm"


def _check_spacing(spacing: tuple[float, ...], path: Path) -> tuple[float, float]:
    sp = (float(spacing[0]), float(spacing[1]))
    if not all(np.isfinite(sp)) or min(sp) <= 0:
        raise DatakitError(f"invalid pixel spacing {sp} in the header", path)
    return sp


def _image2d(path: Path) -> tuple[np.ndarray, tuple[float, float]]:
    """A single-frame file: 2D, or 3D with one slice (the MHD release writes W x H x 1)."""
    a, spacing = read_image(path)
    if a.ndim == 3 and a.shape[0] == 1:
        a, spacing = a[0], spacing[1:]
    if a.ndim != 2:
        raise DatakitError(f"expected a 2D image, found shape {a.shape}", path)
    return a, _check_spacing(spacing, path)


def _same_grid(shape: tuple[int, ...], spacing: tuple[float, ...], ref_shape: tuple[int, ...],
               ref_spacing: tuple[float, ...], path: Path, ref: Path | None) -> None:
    if tuple(shape) != tuple(ref_shape) or not np.allclose(spacing, ref_spacing, rtol=1e-4):
        of = f"{ref.name}'s" if ref else "its image's"
        raise DatakitError(f"mismatched geometry: shape {tuple(shape)} at {_mm(tuple(spacing[-2:]))} differs "
                           f"from {of} {tuple(ref_shape)} at {_mm(tuple(ref_spacing[-2:]))}", path)


