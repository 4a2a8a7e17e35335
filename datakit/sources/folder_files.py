"""Finding image/mask pairs in a generic folder (the files are read by :mod:`datakit.io.raster`).

Layouts (docs/folder.md):
- ``SRC/images/X.*`` with ``SRC/masks/X.*`` (masks may carry ``--mask-suffix``: ``masks/X_mask.png``;
  other folder names with ``--images-dir`` / ``--masks-dir``, e.g. ``CXR_png``);
- masks beside their images with ``--mask-suffix`` (``X.tif`` and ``X_mask.tif``, any depth);
- either of these under ``SRC/{train,valid,test}/``: the sub-folders are the official split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datakit.errors import DatakitError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
# sub-folder name -> split name; the usual spellings of the official splits
SPLIT_FOLDERS = {"train": "train", "training": "train", "valid": "valid", "val": "valid",
                 "validation": "valid", "test": "test", "testing": "test"}
MAX_LISTED = 5


@dataclass(frozen=True)
class Pair:
    key: str  # relative path without extension (and without the mask suffix), e.g. "train/X"
    image: Path
    mask: Path
    split: str | None  # official split of its sub-folder, None without sub-folders


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if not p.is_dir() and p.suffix.lower() in EXTENSIONS and not p.name.startswith("."))


def _listed(names: list[str]) -> str:
    return ", ".join(names[:MAX_LISTED]) + (f" ... and {len(names) - MAX_LISTED} more"
                                            if len(names) > MAX_LISTED else "")


def _keyed(files: list[Path], base: Path, what: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in files:
        key = p.relative_to(base).with_suffix("").as_posix()
        if key in out:
            raise DatakitError(f"two {what} files share the name {key!r}: {out[key].name} and {p.name}", p.parent)
        out[key] = p
    return out


def _strip_suffix(masks: dict[str, Path], suffix: str, folder: Path) -> dict[str, Path]:
    if not suffix:
        return masks
    bad = [k for k in masks if not k.endswith(suffix)]
    if bad:
        raise DatakitError(f"{len(bad)} mask file(s) do not end with --mask-suffix {suffix!r}: {_listed(bad)}",
                           folder)
    return {k[: -len(suffix)]: p for k, p in masks.items()}


def _pairs_in(folder: Path, suffix: str, split: str | None, prefix: str, dirs: tuple[str, str]) -> list[Pair]:
    images_dir, masks_dir = folder / dirs[0], folder / dirs[1]
    if images_dir.is_dir() and masks_dir.is_dir():
        images = _keyed(_image_files(images_dir), images_dir, "image")
        masks = _strip_suffix(_keyed(_image_files(masks_dir), masks_dir, "mask"), suffix, masks_dir)
    elif suffix:  # masks beside their images
        files = _keyed(_image_files(folder), folder, "image")
        masks = {k[: -len(suffix)]: p for k, p in files.items() if k.endswith(suffix)}
        images = {k: p for k, p in files.items() if not k.endswith(suffix)}
    else:
        raise DatakitError(f"expected {dirs[0]}/ and {dirs[1]}/ sub-folders (other names: --images-dir, "
                           "--masks-dir), or masks beside their images with --mask-suffix (e.g. _mask for "
                           "X.tif + X_mask.tif)", folder)
    lonely_images = sorted(set(images) - set(masks))
    lonely_masks = sorted(set(masks) - set(images))
    if lonely_images:
        raise DatakitError(f"{len(lonely_images)} image(s) without a mask: {_listed(lonely_images)}"
                           f"{'' if suffix else ' (masks named differently? try --mask-suffix)'}", folder)
    if lonely_masks:
        raise DatakitError(f"{len(lonely_masks)} mask(s) without an image: {_listed(lonely_masks)}", folder)
    return [Pair(prefix + k, images[k], masks[k], split) for k in sorted(images)]


def find_pairs(root: Path, mask_suffix: str = "", images_dir: str = "images", masks_dir: str = "masks") -> list[Pair]:
    """Every image/mask pair under ``root``; see the module docstring for the layouts."""
    if not root.is_dir():
        raise DatakitError("not a folder", root)
    split_dirs = sorted(p for p in root.iterdir() if p.is_dir() and p.name.lower() in SPLIT_FOLDERS)
    if split_dirs:
        pairs: list[Pair] = []
        for d in split_dirs:
            pairs += _pairs_in(d, mask_suffix, SPLIT_FOLDERS[d.name.lower()], f"{d.name}/", (images_dir, masks_dir))
    else:
        pairs = _pairs_in(root, mask_suffix, None, "", (images_dir, masks_dir))
    if not pairs:
        raise DatakitError(f"no image files ({', '.join(EXTENSIONS)}) found", root)
    return pairs
