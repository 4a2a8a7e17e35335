"""Post-processing decided on validation and stored with the model (nnU-Net's rule).

The one operation: per class, keep the largest connected component and set the class's other
components to background. Components are found in 3D on a volume (its slices stacked in order)
and in 2D on a 2D sample, with full connectivity (26 neighbours in 3D, 8 in 2D: nnU-Net v2's
``remove_all_but_largest_component``, skimage's default) and sized in mm^3 (voxel count times
the volume's voxel volume: within one volume the same ranking as voxel counts).

The decision, per class: keep the operation where the mean validation Dice of that class does not
drop (nnU-Net's ``determine_postprocessing`` keeps it where it does not hurt). A class's operation
only turns that class's voxels into background, so one pass with every class post-processed gives
each class's comparison. ``train run`` decides at its end on its validation split for
``checkpoints/best.pt`` and ``last.pt`` (each on its own predictions) and records the decision in
both and in ``RUN/postprocessing.json`` (train/decisions.py); ``train postprocess`` does the same for
older runs and checkpoints. The record (checkpoint key ``postprocessing``)::

    {"operation": "largest_component", "connectivity": "full",
     "classes": {"RV": true, "MYO": false, "LV": true},
     "rule": "...", "split": "valid", "volumes": 30, "store_fingerprint": "b0117d33154c3d1a", "step": 3240,
     "valid_dice": {"raw": {"RV": 0.78, ..., "mean": 0.80}, "largest_component": {...}}}
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from datakit.errors import DatakitError
from train.choices import POSTPROCESS

OPERATION = "largest_component"
RULE = "kept for a class where its mean validation Dice does not drop (nnU-Net)"
RECORD_FILE = "postprocessing.json"


def keep_largest(pred: np.ndarray, spacing: Sequence[float], class_ids: Iterable[int]) -> np.ndarray:
    """``pred`` with, for each class of ``class_ids``, only its largest connected component (others
    set to 0). A (Z, H, W) volume is labelled in 3D; a 2D sample ((H, W), or (1, H, W) with a
    2-element ``spacing``) in 2D. Full connectivity; sizes in mm^3 (``spacing`` per axis)."""
    if pred.ndim == 3 and len(spacing) == 2:  # a 2D sample stacked as a one-slice volume
        return keep_largest(pred[0], spacing, class_ids)[None]
    out = pred.copy()
    structure = ndimage.generate_binary_structure(pred.ndim, pred.ndim)
    voxel = float(np.prod(spacing[-pred.ndim:])) if len(spacing) >= pred.ndim else 1.0
    for c in class_ids:
        comp, n = ndimage.label(pred == c, structure)
        if n > 1:
            sizes = np.bincount(comp.ravel())[1:] * voxel
            out[(comp > 0) & (comp != 1 + int(np.argmax(sizes)))] = 0
    return out


def recorded(ck: dict[str, Any]) -> dict[str, Any] | None:
    """A checkpoint's post-processing record, or None (none decided yet)."""
    rec = ck.get("postprocessing")
    return rec if isinstance(rec, dict) else None


def check_record(rec: object, classes: list[str], path: Path) -> None:
    """A checkpoint's ``postprocessing`` entry: operation known, a yes/no per foreground class."""
    if not isinstance(rec, dict):
        raise DatakitError(f"postprocessing: expected a mapping, found {type(rec).__name__}", path)
    if rec.get("operation") != OPERATION:
        raise DatakitError(f"postprocessing operation {rec.get('operation')!r} is not one this train knows "
                           f"({OPERATION})", path)
    chosen = rec.get("classes")
    if not isinstance(chosen, dict) or set(chosen) != set(classes[1:]) or \
            not all(isinstance(v, bool) for v in chosen.values()):
        raise DatakitError(f"postprocessing classes {chosen!r}: expected true/false for each of {classes[1:]}", path)


def resolve(mode: str, ck: dict[str, Any], classes: list[str]) -> tuple[list[int] | None, str]:
    """``--postprocess MODE`` -> (class indices to post-process, or None for none; what was applied, in words)."""
    if mode not in POSTPROCESS:
        raise DatakitError(f"--postprocess must be {', '.join(POSTPROCESS)}, not {mode!r}")
    if mode == "none":
        return None, "none (--postprocess none)"
    if mode == "lcc":
        return list(range(1, len(classes))), "largest component of every class (--postprocess lcc)"
    rec = recorded(ck)
    if rec is None:
        return None, ("none: the checkpoint records no post-processing decision (train postprocess decides "
                      "one on validation)")
    ids = [classes.index(name) for name, keep in rec["classes"].items() if keep]
    names = ", ".join(classes[i] for i in ids) or "no class"
    return ids, f"largest component of {names} (recorded in the checkpoint, decided on {rec.get('split')})"


def describe(decision: dict[str, Any]) -> list[str]:
    """Lines that show a decision: per class the validation Dice raw and post-processed, and the choice."""
    raw, pp = decision["valid_dice"]["raw"], decision["valid_dice"][OPERATION]

    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.4f}"

    lines = [f"post-processing decided on {decision['split']} ({decision['volumes']} volumes), checkpoint step "
             f"{decision['step']}: {RULE}",
             f"{'class':<10} {'raw Dice':>9} {'largest component':>18}  keep"]
    for name, keep in decision["classes"].items():
        lines.append(f"{name:<10} {f(raw[name]):>9} {f(pp[name]):>18}  {'yes' if keep else 'no'}")
    return lines
