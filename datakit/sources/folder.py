"""Generic image/mask folders (Kvasir-SEG, LGG brain MRI, chest X-ray lungs, ...): one 2D sample per pair.

Pairs are found by :mod:`datakit.sources.folder_files`. Each image is normalised on its own, then
letterboxed to ``size`` x ``size`` (aspect kept, padding at the normalised background level, mask 0).
Masks are class indices, or grey levels mapped explicitly (``binarize`` / ``mask_values``): a value
outside the mapping is an error, never folded into a class.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from datakit.choices import FOLDER_CHANNELS, FOLDER_NORMALIZATIONS
from datakit.errors import DatakitError
from datakit.geometry import letterbox
from datakit.io.raster import header_mode, is_colour, read_array
from datakit.normalize import normalizer_name
from datakit.prepare import prepare_2d
from datakit.sample import Sample, label_state_from_mask, unknown_labels
from datakit.sources.base import ItemResult, SourceBase, check_size, source_path
from datakit.sources.folder_files import Pair, find_pairs
from datakit.splits import SplitResult, make_splits

MAX_LISTED = 10
SAMPLED = 16  # images decoded to tell colour from grey-saved-as-RGB
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601, as PIL's convert("L")


def image_channels(raw: np.ndarray, channels: int) -> np.ndarray:
    """(C, H, W) float32 of a decoded image in ``channels`` channels (colour -> grey by luminance when 1).
    ``convert folder`` and ``train predict --input`` both use it."""
    a = raw.astype(np.float32)
    if a.ndim == 3 and channels == 1:
        a = a[..., 0] if not is_colour(raw) else a @ LUMA
    if a.ndim == 2:
        return np.repeat(a[None], channels, axis=0)
    return np.ascontiguousarray(np.moveaxis(a, -1, 0))


@dataclass(frozen=True)
class FolderItem:
    patient: str
    pairs: tuple[Pair, ...]


def _values(vals: np.ndarray) -> str:
    shown = ", ".join(str(v) for v in vals[:MAX_LISTED].tolist())
    return shown + (f" ... ({len(vals)} values)" if len(vals) > MAX_LISTED else "")


@dataclass
class MaskMapping:
    """How mask pixels become class indices: binarize, an explicit grey-level list, or as they are."""

    n_classes: int
    binarize: float | None = None
    values: list[int] | None = None

    def __post_init__(self) -> None:
        if self.binarize is not None and self.values is not None:
            raise DatakitError("--binarize and --mask-values exclude each other: choose one")
        if self.values is not None:
            if len(set(self.values)) != len(self.values):
                raise DatakitError(f"--mask-values lists a value twice: {self.values}")
            if len(self.values) != self.n_classes:
                raise DatakitError(f"--mask-values gives {len(self.values)} grey levels but there are "
                                   f"{self.n_classes} classes (--classes)")
        if self.binarize is not None and self.n_classes != 2:
            raise DatakitError(f"--binarize makes 2 classes, but --classes names {self.n_classes}")
        if self.binarize is not None and not math.isfinite(self.binarize):
            raise DatakitError(f"--binarize must be a finite grey level, not {self.binarize}")

    def check_threshold(self, raw: np.ndarray, path: Path) -> None:
        """--binarize T where no pixel of this mask's dtype can be above T (e.g. 300 on 8-bit masks), or
        every pixel is (T below the dtype's minimum): all-background or all-foreground masks would pass
        validation unnoticed, so refuse it."""
        if self.binarize is None or raw.dtype.kind not in "ui":
            return
        lo, hi = np.iinfo(raw.dtype).min, np.iinfo(raw.dtype).max
        t = self.binarize
        if t >= hi or t < lo:
            raise DatakitError(f"--binarize {t:g} is impossible for {raw.dtype} masks (grey levels {lo}-{hi}): every "
                               f"pixel would be {'background' if t >= hi else 'foreground'}; give a threshold "
                               f"from {lo} to {hi - 1} (127 for black/white 8-bit masks)", path)

    def apply(self, raw: np.ndarray, path: Path) -> np.ndarray:
        self.check_threshold(raw, path)
        if raw.ndim == 3:
            if not is_colour(raw):
                raw = raw[..., 0]
            elif self.binarize is not None:  # JPEG chroma noise on a black/white mask
                raw = raw.astype(np.float32).mean(axis=2)
            else:
                raise DatakitError("mask is colour (RGB channels differ); masks must hold grey levels or "
                                   "class indices (a black/white JPEG mask: use --binarize T)", path)
        if self.binarize is not None:
            return (raw > self.binarize).astype(np.uint8)
        vals, counts = np.unique(raw, return_counts=True)
        if self.values is not None:
            known = np.isin(vals, self.values)
            if not known.all():
                raise DatakitError(f"{int(counts[~known].sum())} pixel(s) with value(s) {_values(vals[~known])} "
                                   f"outside --mask-values {','.join(map(str, self.values))}", path)
            lut = {v: i for i, v in enumerate(self.values)}
            out = np.zeros(raw.shape, np.uint8)
            for v in vals.tolist():
                out[raw == v] = lut[v]
            return out
        if vals.min() < 0 or vals.max() >= self.n_classes or not np.array_equal(vals, np.round(vals)):
            few = len(vals) <= MAX_LISTED  # a handful of grey levels: a class coding, not JPEG noise
            raise DatakitError(f"mask values {_values(vals)} are not class indices 0-{self.n_classes - 1}; use "
                               f"--binarize 127 for black/white masks (JPEG noise included)"
                               + (f", or --mask-values {','.join(str(v) for v in vals.tolist())} to map these "
                                  f"grey levels to classes in order" if few else ""), path)
        return raw.astype(np.uint8)


@dataclass
class FolderSource(SourceBase):
    root: Path
    classes: list[str] | None = None
    mask_suffix: str = ""
    images_dir: str = "images"
    masks_dir: str = "masks"
    binarize: float | None = None
    mask_values: list[int] | None = None
    size: int = 256
    norm: str = "auto"  # auto: scale255 when every image is 8-bit, else percentile-iqr
    channels_opt: str = "auto"  # auto (3 when any image is colour), 1, 3
    patient_regex: str | None = None
    name: str | None = None
    stratify_column: str | None = None
    official_split_from: ClassVar[str] = "train/ valid/ test/ sub-folders"
    keypoint_names: list[str] | None = None
    pairs: list[Pair] = field(init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        check_size(self.size)
        if self.classes is None:
            n = len(self.mask_values) if self.mask_values else 2
            self.classes = ["background", "foreground"] if n == 2 else \
                ["background", *(f"class{i}" for i in range(1, n))]
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise DatakitError(f"--classes needs at least 2 distinct names, not {self.classes}")
        self.mapping = MaskMapping(len(self.classes), self.binarize, self.mask_values)
        self.pairs = find_pairs(self.root, self.mask_suffix, self.images_dir, self.masks_dir)
        if self.binarize is not None and self.pairs:  # an impossible --binarize fails before any work,
            first = self.pairs[0].mask                  # whatever --on-error says (each mask is checked too)
            self.mapping.check_threshold(read_array(first), first)
        self.name = f"folder:{self.name or self.root.resolve().name}"
        self.image_size = (self.size, self.size)
        self._items = self._group()
        modes = [header_mode(p.image) for p in self.pairs] \
            if "auto" in (self.norm, self.channels_opt) else []
        if self.channels_opt == "auto":
            coded_rgb = [p.image for p, (c, _) in zip(self.pairs, modes, strict=True) if c == 3]
            self.channels = self._auto_channels(coded_rgb)
        elif self.channels_opt in FOLDER_CHANNELS:
            self.channels = int(self.channels_opt)
        else:
            raise DatakitError(f"--channels must be {', '.join(FOLDER_CHANNELS)}, not {self.channels_opt!r}")
        if self.norm == "auto":
            self.norm = "scale255" if all(eight for _, eight in modes) else "percentile-iqr"
        if self.norm not in FOLDER_NORMALIZATIONS:
            raise DatakitError(f"unknown --norm {self.norm!r}; choose one of {', '.join(FOLDER_NORMALIZATIONS)}")
        self.normalization = normalizer_name(self.norm)

    @staticmethod
    def _auto_channels(rgb_files: list[Path]) -> int:
        """3 if an RGB-coded image really is colour; grey saved as RGB (e.g. chest X-ray JPEGs) is 1.

        Decoding every file twice would double the conversion: up to SAMPLED files spread evenly
        through the folder decide (``--channels`` overrides).
        """
        if not rgb_files:
            return 1
        step = max(1, len(rgb_files) // SAMPLED)
        return 3 if any(is_colour(read_array(p)) for p in rgb_files[::step][:SAMPLED]) else 1

    def __getstate__(self) -> dict[str, object]:
        # the pipeline pickles the source with every item it sends to a worker: leave the file
        # lists behind (read() needs only the item), or a large folder costs O(files^2) to send
        state = self.__dict__.copy()
        state["pairs"], state["_items"] = [], []
        return state

    # -- patients and splits ------------------------------------------------------------------------
    def _patient_of(self, pair: Pair) -> str:
        rel = pair.key.split("/", 1)[1] if pair.split is not None else pair.key
        if self.patient_regex is None:
            return rel
        try:
            m = re.search(self.patient_regex, rel)
        except re.error as e:
            raise DatakitError(f"--patient-regex {self.patient_regex!r} is not a valid regex ({e})") from None
        if m is None:
            raise DatakitError(f"--patient-regex {self.patient_regex!r} does not match {rel!r}", pair.image)
        pid = m.groupdict().get("patient") or (m.group(1) if m.groups() else m.group(0))
        if not pid:
            raise DatakitError(f"--patient-regex {self.patient_regex!r} gives an empty patient id", pair.image)
        return pid

    def _group(self) -> list[FolderItem]:
        groups: dict[str, list[Pair]] = {}
        for pair in self.pairs:
            groups.setdefault(self._patient_of(pair), []).append(pair)
        for pid, pairs in groups.items():
            splits = sorted({p.split or "" for p in pairs})
            if len(splits) > 1:
                raise DatakitError(f"patient {pid!r} has files in several split folders ({', '.join(splits)}): "
                                   f"{pairs[0].image.name} ...", self.root)
        return [FolderItem(pid, tuple(pairs)) for pid, pairs in sorted(groups.items())]

    def items(self) -> list[FolderItem]:
        return list(self._items)

    def official(self) -> dict[str, list[str]] | None:
        """train/ valid/ test/ sub-folders as the split; None when the folder has none."""
        if not any(p.split for p in self.pairs):
            return None
        out: dict[str, list[str]] = {}
        for item in self._items:
            out.setdefault(item.pairs[0].split or "", []).append(item.patient)
        return out

    def official_split(self, patient_ids: list[str]) -> SplitResult:
        """``--split official``: the train/ valid/ test/ sub-folders, checked like a split file."""
        return make_splits("official", patient_ids, official=self.official(), official_name=self.name)

    def default_split(self) -> str:
        return "official" if self.official() is not None else "random"

    # -- one patient ----------------------------------------------------------------------------------
    def _sample(self, item: FolderItem, pair: Pair) -> Sample:
        raw = read_array(pair.image)
        # --binarize thresholds grey levels: a 1-bit or palette mask must then read as its grey levels
        # (0/255, palette colours), not as 0/1 indices that every threshold above 1 would erase
        raw_mask = read_array(pair.mask, labels=self.mapping.binarize is None)
        if raw_mask.shape[:2] != raw.shape[:2]:
            raise DatakitError(f"mask is {raw_mask.shape[1]}x{raw_mask.shape[0]} pixels, its image "
                               f"{pair.image.name} {raw.shape[1]}x{raw.shape[0]}", pair.mask)
        labels = self.mapping.apply(raw_mask, pair.mask)
        image = image_channels(raw, self.channels)
        prepared = prepare_2d(image, self.size, self.norm)  # normalise, anti-alias, letterbox
        scale = prepared.scale
        mask, _, _ = letterbox(labels, self.size, order=0, fill=0)
        return Sample(
            image=prepared.image, mask=mask,
            scribble=unknown_labels(mask.shape), label_state=label_state_from_mask(mask, len(self.classes)),
            dataset=self.name, patient=item.patient, source=source_path(pair.image, self.root),
            extra={"source_shape": np.array(raw.shape[:2], np.int32), "letterbox_scale": np.float32(scale)},
        )

    def read(self, item: FolderItem) -> ItemResult:
        samples = [self._sample(item, pair) for pair in item.pairs]
        row: dict[str, object] = {"id": item.patient, "images": float(len(samples))}
        if item.pairs[0].split is not None:
            row["split_folder"] = item.pairs[0].key.split("/", 1)[0]
        return ItemResult(samples, row)
