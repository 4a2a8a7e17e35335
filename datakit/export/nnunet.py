"""Export a store to nnU-Net v2's raw dataset layout (docs/nnunet.md).

``OUT/DatasetNNN_NAME/``: ``imagesTr/<case>_0000.<ending>`` (one file per channel, or one RGB PNG),
``labelsTr/<case>.<ending>``, ``imagesTs/`` + ``labelsTs/`` for the store's ``test`` split,
``dataset.json``, ``splits_final.json`` (one fold from the store's patient-level splits: ``train``
and the other training splits such as MAAG's ``train_scribble`` / ``train_masks`` are nnU-Net's
train, ``valid`` its val; :func:`nnunet_role`) and ``datakit_cases.json`` (case -> store sample
indices, patient, split).

Cases: NIfTI (``.nii.gz``) when the store has pixel spacing; slices of one source volume
(same dataset, patient, frame and view, with ``meta/slice`` >= 0 and a slice spacing) are stacked
back into one 3D case, spacing (row, col, slice_spacing) from ``meta/``. Other samples are single
2D cases (a 1-slice NIfTI, nnU-Net's 2D convention of spacing 999 across slices). Stores of 8-bit
natural images (no spacing, normalisation scale:1/255) export as PNG, as nnU-Net's own 2D datasets do.
A volume of a store with ``meta/source_affine`` (ACDC) gets the affine of its stored grid in the
source's world frame (source directions, stored spacing, origin moved by the crop:
:func:`datakit.geometry.stored_affine`), so nnU-Net's predictions lie back over the original
images; other cases get diagonal affines (spacing, origin 0).
Labels are consecutive 0..K-1; where a label is unknown (255) the ``ignore`` label K is used, as
nnU-Net requires (the highest value, named "ignore"). With ``labels="scribbles"`` that is every
unlabelled pixel.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datakit.choices import EXPORT_FORMATS, EXPORT_LABELS
from datakit.constants import IGNORE
from datakit.errors import DatakitError
from datakit.geometry import stored_affine
from datakit.locks import exclusive_lock
from datakit.safe_io import WRITTEN_MEANWHILE, os_error, remove_stale_temporaries, write_file
from datakit.store.check import check_label_values
from datakit.store.reader import Store
from datakit.store.volumes import slice_groups

PNG_NORMALIZATION = "scale:1/255"
FLAT_SPACING = 999.0  # nnU-Net's marker for "no third dimension" in 2D data stored as 3D


@dataclass
class Case:
    name: str
    indices: list[int]  # store samples, in slice order
    split: str  # the store's split name (train, valid, test, train_scribble, ...), "" in none
    spacing: tuple[float, float, float]  # row, col, slice

    @property
    def role(self) -> str:
        return nnunet_role(self.split)


@dataclass
class ExportReport:
    folder: Path
    training: int
    test: int
    file_ending: str
    labels: dict[str, int]
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"wrote {self.folder}: {self.training} training cases, {self.test} test cases ({self.file_ending}), "
                f"labels {', '.join(f'{v} {k}' for k, v in self.labels.items())}")


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(text)).strip("-_") or "x"


def nnunet_role(split: str) -> str:
    """What a store split is to nnU-Net: ``train`` for ``train`` and the other training splits (named
    ``train*``, as :func:`datakit.splits.split_order` reads them: MAAG's ``train_scribble`` and
    ``train_masks``), ``val`` for ``valid`` (or ``val``, ``validation``), ``test`` (imagesTs) for
    ``test``, and "" for any other name and for samples in no split (imagesTr, in no fold)."""
    if split.startswith("train"):
        return "train"
    if split in ("valid", "val", "validation"):
        return "val"
    return "test" if split == "test" else ""


def _split_of(store: Store) -> np.ndarray:
    out = np.full(len(store), "", object)
    for name, idx in store.splits.items():
        out[idx] = name
    return out


def plan_cases(store: Store, volumes: bool) -> tuple[list[Case], list[str]]:
    """Group samples into cases: slices of one volume stacked when ``volumes``, else one per sample."""
    meta, notes = store.meta, []
    split = _split_of(store)
    stackable = (meta["slice"] >= 0) & np.isfinite(meta["slice_spacing"].astype(float)) if volumes \
        else np.zeros(len(store), bool)
    groups = slice_groups(meta, range(len(store)), stackable)
    cases: list[Case] = []
    used: set[str] = set()

    def add(base: str, idx: list[int]) -> None:
        name, k = base, 1
        while name in used:
            k += 1
            name = f"{base}-{k}"
        used.add(name)
        splits = sorted({split[i] for i in idx})
        if len(splits) > 1:
            raise DatakitError(f"case {name} has samples in several splits ({', '.join(splits)})", store.path)
        sr, sc = (float(x) if math.isfinite(float(x)) else 1.0 for x in meta["spacing"][idx[0]])
        ss = float(meta["slice_spacing"][idx[0]]) if len(idx) > 1 else FLAT_SPACING
        cases.append(Case(name, idx, splits[0], (sr, sc, ss)))

    for idx in (g for g in groups if stackable[g[0]]):
        patient, frame, view = (meta[k][idx[0]] for k in ("patient", "frame", "view"))
        slices = [int(meta["slice"][i]) for i in idx]
        base = "_".join(_safe(p) for p in (patient, view, frame) if p)
        if slices == list(range(slices[0], slices[0] + len(slices))):
            add(base, idx)
        else:  # missing or repeated slices: stacking would misplace them
            notes.append(f"{patient} {frame}: slices {slices} are not consecutive; exported one case per slice")
            for i in idx:
                add(f"{base}_s{int(meta['slice'][i]):03d}", [i])
    singles = [g[0] for g in groups if not stackable[g[0]]]
    per_key: dict[str, int] = {}
    for i in singles:
        per_key[meta["patient"][i]] = per_key.get(meta["patient"][i], 0) + 1
    for i in singles:
        base = "_".join(_safe(p) for p in (meta["patient"][i], meta["view"][i], meta["frame"][i]) if p)
        add(base if per_key[meta["patient"][i]] == 1 else f"{base}_{i:05d}", [i])
    return cases, notes


def _target(out_dir: Path, dataset_id: int, name: str, overwrite: bool) -> Path:
    if not 1 <= dataset_id <= 999:
        raise DatakitError(f"--dataset-id must be 1-999 (nnU-Net's three digits), not {dataset_id}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        raise DatakitError(f"--name {name!r}: use letters, digits, '_' and '-' only")
    if not out_dir.is_dir():
        raise DatakitError("output folder does not exist", out_dir)
    target = out_dir / f"Dataset{dataset_id:03d}_{name}"
    others = [p.name for p in out_dir.glob(f"Dataset{dataset_id:03d}_*") if p != target]
    if others:
        raise DatakitError(f"nnU-Net dataset ids must be unique; {', '.join(others)} already uses {dataset_id}",
                           out_dir)
    if target.exists() and not overwrite:
        raise DatakitError("already exists; pass --overwrite to replace it", target)
    return target


def export_nnunet(store_path: str | Path, out_dir: str | Path, dataset_id: int, name: str, *,
                  labels: str = "masks", fmt: str = "auto", channel_names: Sequence[str] | None = None,
                  overwrite: bool = False, preprocessed: str | Path | None = None,
                  progress: Callable[[int, int], None] | None = None) -> ExportReport:
    """Write ``OUT_DIR/DatasetNNN_NAME`` (see the module docstring); nothing is left on failure.
    ``progress(done, total)`` after each case.

    nnU-Net reads ``splits_final.json`` from ``nnUNet_preprocessed/DatasetNNN_NAME/``, not from the raw
    folder: with ``preprocessed`` (that nnUNet_preprocessed folder) the split is written there too.
    """
    if labels not in EXPORT_LABELS:
        raise DatakitError(f"--labels must be {' or '.join(EXPORT_LABELS)}, not {labels!r}")
    target = _target(Path(out_dir), dataset_id, name, overwrite)
    placed = None if preprocessed is None else Path(preprocessed) / target.name / "splits_final.json"
    if placed is not None and placed.exists() and not overwrite:  # refused before any work, as the dataset is
        raise DatakitError("already exists; pass --overwrite to replace it", placed)
    with exclusive_lock(target, "nnU-Net dataset", option="--name or OUT_DIR"):  # one writer, the whole run
        _target(Path(out_dir), dataset_id, name, overwrite)  # again: a writer that held the lock may have finished
        return _export(store_path, target, placed, labels, fmt, channel_names, overwrite, progress)


def _export(store_path: str | Path, target: Path, placed: Path | None, labels: str, fmt: str,
            channel_names: Sequence[str] | None, overwrite: bool,
            progress: Callable[[int, int], None] | None) -> ExportReport:
    with Store(store_path) as store:
        fmt = _format(store, fmt)
        channels = store.channels
        names = list(channel_names) if channel_names else (["R", "G", "B"] if channels == 3 else ["image"])
        if len(names) != channels:
            raise DatakitError(f"--channel-names gives {len(names)} name(s) for {channels} channel(s)")
        if "ignore" in store.classes:
            raise DatakitError("a class is named 'ignore', which nnU-Net reserves for unknown pixels", store.path)
        check_label_values(store, (labels,))  # a value outside classes would be a label dataset.json lacks
        cases, notes = plan_cases(store, volumes=fmt == "nifti")
        remove_stale_temporaries(target)  # those of a killed export (their PID is dead)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}-", suffix=".tmp", dir=target.parent))
        except OSError as e:
            raise os_error(e, target.parent) from None
        try:
            report = _write(store, _reported(cases, progress), tmp, target.name, fmt, labels, names, notes)
            report.folder = target
            _put_folder(tmp, target, overwrite)
            _place_splits(target, placed, report.notes, overwrite)
        except BaseException as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(e, OSError):  # disk full, I/O error: one line naming the dataset folder
                raise os_error(e, target) from None
            raise
    return report


def _put_folder(tmp: Path, target: Path, overwrite: bool) -> None:
    """The complete export in place: a previous one removed only with ``overwrite``; without it, a
    folder (or file) that appeared at ``target`` meanwhile is refused, never removed."""
    if os.path.lexists(target):
        if not overwrite:
            raise DatakitError(WRITTEN_MEANWHILE, target)
        shutil.rmtree(target)
    try:
        tmp.rename(target)  # never onto a folder with anything in it, nor a file
    except OSError as e:
        if e.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            raise DatakitError(WRITTEN_MEANWHILE, target) from None
        raise


def _place_splits(target: Path, placed: Path | None, notes: list[str], overwrite: bool) -> None:
    """Put splits_final.json where nnUNetTrainer looks for it (``placed``), or say where it must go."""
    split_file = target / "splits_final.json"
    if not split_file.exists():
        if placed is not None and placed.exists():
            notes.append(f"{placed} (an earlier one) is left as it is, and nnU-Net will use it: remove it "
                         "for nnU-Net's own folds")
        return
    if placed is None:
        notes.append(f"nnU-Net reads splits_final.json from $nnUNet_preprocessed/{target.name}/: copy it there "
                     f"(after nnUNetv2_plan_and_preprocess) or pass --preprocessed DIR")
        return
    placed.parent.mkdir(parents=True, exist_ok=True)
    write_file(placed, split_file.read_bytes(), overwrite)  # a unique temporary beside it, renamed
    notes.append(f"splits_final.json also written to {placed.parent}/ (where nnU-Net reads it)")


def _format(store: Store, fmt: str) -> str:
    spaced = bool(np.isfinite(store.meta["spacing"].astype(float)).any())
    eight_bit = str(store.file["images"].attrs.get("normalization", "")) == PNG_NORMALIZATION
    if fmt == "auto":
        return "png" if eight_bit and not spaced else "nifti"
    if fmt == "png" and not eight_bit:
        raise DatakitError("--format png needs 8-bit images (normalisation scale:1/255); use nifti", store.path)
    if fmt not in EXPORT_FORMATS:
        raise DatakitError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}")
    return fmt


def _reported(cases: list[Case], progress: Callable[[int, int], None] | None) -> Iterator[Case]:
    """The cases, reporting ``progress(done, total)`` once the writer is done with each."""
    for done, case in enumerate(cases, 1):
        yield case
        if progress is not None:
            progress(done, len(cases))


def _write(store: Store, cases: Iterable[Case], root: Path, title: str, fmt: str, labels: str,
           channel_names: list[str], notes: list[str]) -> ExportReport:
    k = len(store.classes)
    ending = ".png" if fmt == "png" else ".nii.gz"
    source = "scribbles" if labels == "scribbles" else "masks"
    used_ignore = False
    written: dict[str, list[str]] = {"train": [], "val": [], "test": [], "": []}  # by nnU-Net role
    from_split: dict[str, Counter[str]] = {}  # role -> store split -> cases
    case_map: dict[str, dict] = {}
    skipped = 0
    hidden = 0
    label_state = store.file["label_state"][()]  # (N, K) int8: small, read once
    for case in cases:
        idx = case.indices
        # test cases are for evaluation: always their dense masks, whatever --labels says
        lab = store.rows("masks" if case.role == "test" else source, idx)
        if (lab == IGNORE).all():
            skipped += 1
            continue
        unknown = lab == IGNORE
        # a class unknown in a slice (label_state -1: merged stores, blurred structures) may hide in its
        # background: those background pixels are not evidence of "no class", so they are ignored too
        states = label_state[idx]
        unsure = (states[:, 1:] == -1).any(axis=1)
        if unsure.any():
            hidden += 1
            unknown |= (lab == 0) & unsure.reshape((-1,) + (1,) * (lab.ndim - 1))
        used_ignore |= bool(unknown.any())
        lab = lab.copy()
        lab[unknown] = k
        img = store.rows("images", idx)
        part = "Ts" if case.role == "test" else "Tr"
        (root / f"images{part}").mkdir(exist_ok=True)
        (root / f"labels{part}").mkdir(exist_ok=True)
        if fmt == "png":
            _write_png(img[0], lab[0], root, part, case.name)
        else:
            _write_nifti(img, lab, case.spacing, root, part, case.name, _case_affine(store, case))
        written[case.role].append(case.name)
        from_split.setdefault(case.role, Counter())[case.split] += 1
        case_map[case.name] = {"split": case.split or None, "samples": [int(i) for i in idx],
                               "patient": str(store.meta["patient"][idx[0]]),
                               "dataset": str(store.meta["dataset"][idx[0]])}
    training = len(written["train"]) + len(written["val"]) + len(written[""])
    if training == 0:
        raise DatakitError(f"no training case has any {source} label to export", store.path)
    if skipped:
        notes.append(f"{skipped} case(s) without any {source} label skipped")
    if hidden:
        notes.append(f"{hidden} case(s) with a class of unknown state: their background pixels are 'ignore'")
    # nnU-Net requires label 0 to be called "background" (LabelManager); the store's names stay in "datakit"
    label_map = {("background" if i == 0 else c): i for i, c in enumerate(store.classes)}
    if used_ignore:
        label_map["ignore"] = k
    dataset = {
        "channel_names": {str(i): n for i, n in enumerate(channel_names)},
        "labels": label_map,
        "numTraining": training,
        "file_ending": ending,
        "name": title,
        "description": f"exported by datakit from {store.path.name} ({source})",
        "datakit": {"store": str(store.path), "command": str(store.attrs.get("command", "")), "labels": source,
                    "classes": list(store.classes)},
    }
    if fmt == "png":
        dataset["overwrite_image_reader_writer"] = "NaturalImage2DIO"
    (root / "dataset.json").write_text(json.dumps(dataset, indent=2))
    notes += _write_splits(root, written, from_split)
    (root / "datakit_cases.json").write_text(json.dumps(case_map, indent=1))
    return ExportReport(root, training, len(written["test"]), ending, label_map, notes)


def _write_splits(root: Path, written: dict[str, list[str]], from_split: dict[str, Counter[str]]) -> list[str]:
    """splits_final.json (one fold: the store's training splits as train, its validation split as val),
    and notes saying which store splits made it, or why there is none."""
    def made_of(role: str) -> str:
        return f"{' + '.join(sorted(from_split[role]))} ({len(written[role])} cases)"

    notes = []
    if written["train"] and written["val"]:
        splits = [{"train": sorted(written["train"]), "val": sorted(written["val"])}]
        (root / "splits_final.json").write_text(json.dumps(splits, indent=2))
        if set(from_split["train"]) != {"train"} or set(from_split["val"]) != {"valid"}:
            notes.append(f"splits_final.json: train = store split(s) {made_of('train')}, val = {made_of('val')}")
    else:
        missing = " and ".join(what for role, what in (("train", "no training split (train or train_*)"),
                                                       ("val", "no validation split (valid)")) if not written[role])
        notes.append(f"the store has {missing} with exported cases: no splits_final.json (nnU-Net will make "
                     "its own folds, by case, not by patient)")
    if written[""]:
        others = sorted(set(from_split[""]) - {""})
        where = "in no store split" + (f" or in split(s) nnU-Net has no role for: {', '.join(others)}"
                                       if others else "")
        notes.append(f"{len(written[''])} training case(s) {where}: in imagesTr, not in splits_final.json")
    return notes


def _write_png(image: np.ndarray, label: np.ndarray, root: Path, part: str, case: str) -> None:
    from PIL import Image

    pixels = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)  # exact for scale:1/255 stores
    pixels = pixels[0] if pixels.shape[0] == 1 else np.moveaxis(pixels, 0, -1)
    Image.fromarray(pixels).save(root / f"images{part}" / f"{case}_0000.png")
    Image.fromarray(label.astype(np.uint8)).save(root / f"labels{part}" / f"{case}.png")


def _case_affine(store: Store, case: Case) -> np.ndarray:
    """World affine of a case: in the source's frame where the store records it, else diagonal."""
    meta, first = store.meta, case.indices[0]
    diagonal = np.diag([*case.spacing, 1.0])
    if "source_affine" not in meta or int(meta["slice"][first]) < 0:
        return diagonal
    affine = stored_affine(meta["source_affine"][first], tuple(meta["source_shape"][first]),
                           tuple(meta["source_spacing"][first]), tuple(float(x) for x in meta["spacing"][first]),
                           store.image_size, int(meta["slice"][first]))
    if len(case.indices) == 1:  # a lone slice keeps nnU-Net's 2D marker across slices
        affine[:3, 2] *= FLAT_SPACING / np.linalg.norm(affine[:3, 2])
    return affine


def _write_nifti(images: np.ndarray, labels: np.ndarray, spacing: tuple[float, float, float], root: Path,
                 part: str, case: str, affine: np.ndarray | None = None) -> None:
    """images (Z, C, H, W), labels (Z, H, W) -> (H, W, Z) volumes: rows are the first axis, as read."""
    import nibabel as nib

    affine = np.diag([*spacing, 1.0]) if affine is None else affine

    def save(a: np.ndarray, path: Path) -> None:
        img = nib.Nifti1Image(np.ascontiguousarray(a), affine)
        img.set_qform(affine, code=1)
        img.set_sform(affine, code=1)
        img.header.set_xyzt_units("mm")
        nib.save(img, path)

    for c in range(images.shape[1]):
        save(np.moveaxis(images[:, c], 0, -1).astype(np.float32), root / f"images{part}" / f"{case}_{c:04d}.nii.gz")
    save(np.moveaxis(labels, 0, -1).astype(np.uint8), root / f"labels{part}" / f"{case}.nii.gz")
