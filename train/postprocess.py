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
both and in ``RUN/postprocessing.json``; ``train postprocess`` does the same for older runs and
checkpoints. The record (checkpoint key ``postprocessing``)::

    {"operation": "largest_component", "connectivity": "full",
     "classes": {"RV": true, "MYO": false, "LV": true},
     "rule": "...", "split": "valid", "volumes": 30, "store_fingerprint": "b0117d33154c3d1a", "step": 3240,
     "valid_dice": {"raw": {"RV": 0.78, ..., "mean": 0.80}, "largest_component": {...}}}
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from datakit.errors import DatakitError
from datakit.stats import json_safe

OPERATION = "largest_component"
RULE = "kept for a class where its mean validation Dice does not drop (nnU-Net)"
RECORD_FILE = "postprocessing.json"
CHOICES = ("auto", "none", "lcc")


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
    if mode not in CHOICES:
        raise DatakitError(f"--postprocess must be {', '.join(CHOICES)}, not {mode!r}")
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


def decide(model: Any, store: Any, indices: np.ndarray, device: Any, step: int,
           progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Predict ``indices`` (a validation split) once, score raw and with every class post-processed
    (Dice only), and keep the operation for the classes whose mean Dice does not drop."""
    from datakit.store.identity import fingerprint
    from train.inference import evaluate

    classes = store.classes
    res = evaluate(model, store, indices, device, with_hd=False, progress=progress,
                   postprocess=list(range(1, len(classes))))
    raw, pp = res["dice"], res["postprocessed"]["dice"]
    keep = {name: bool(raw[name] is None or (pp[name] is not None and pp[name] >= raw[name])) for name in classes[1:]}
    return json_safe({
        "operation": OPERATION, "connectivity": "full", "classes": keep, "rule": RULE,
        "split": _split_name(store, indices), "volumes": res["volumes"], "store_fingerprint": fingerprint(store),
        "step": int(step), "valid_dice": {"raw": raw, OPERATION: pp},
    })


def _split_name(store: Any, indices: np.ndarray) -> str:
    for name, idx in store.splits.items():
        if len(idx) == len(indices) and np.array_equal(np.sort(idx), np.sort(indices)):
            return name
    return "all" if len(indices) == len(store) else "samples"


def record(path: Path, decision: dict[str, Any], plan: dict[str, Any] | None = None) -> None:
    """Rewrite checkpoint ``path`` with ``decision`` (and ``plan`` when given), safely (temporary + rename)."""
    from train import checkpoint as ckpt

    ck = ckpt.load(path)
    payload = {k: v for k, v in ck.items() if k not in ("format", "version")}
    payload["postprocessing"] = decision
    if plan is not None:
        payload["plan"] = plan
    ckpt.save(path, payload)


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


def decide_for_run(run_dir: Path, store_path: Path, split: str, device: Any, overwrite: bool = True,
                   log: Callable[[str], None] = print, progress: bool | None = None) -> dict[str, Any] | None:
    """Decide for ``RUN/checkpoints/best.pt`` and ``last.pt`` (each on its own predictions of ``split``)
    and record it in both and in ``RUN/postprocessing.json``. None, with a note, when the store has
    no such split or it is empty. ``overwrite`` False refuses checkpoints that already hold a decision."""
    from datakit.progress import progress_bar
    from datakit.safe_io import write_file
    from datakit.store import Store
    from train import checkpoint as ckpt

    store = Store(store_path)
    idx = store.splits.get(split) if split else None
    if idx is None or not len(idx):
        log(f"note: no samples in split {split!r}: no post-processing decided")
        return None
    paths = [p for p in (run_dir / "checkpoints" / "best.pt", run_dir / "checkpoints" / "last.pt") if p.is_file()]
    if not paths:
        raise DatakitError("no checkpoints/best.pt nor last.pt", run_dir)
    loaded = {p: ckpt.load(p) for p in paths}
    if not overwrite:
        done = [str(p) for p, ck in loaded.items() if recorded(ck) is not None]
        if done:
            raise DatakitError(f"{done[0]} already records a post-processing decision; pass --overwrite to decide "
                               "again", run_dir)
    by_step: dict[int, dict[str, Any]] = {}
    out: dict[str, Any] = {}
    with progress_bar(progress) as bar:
        for p, ck in loaded.items():
            step = int(ck["step"])
            if step not in by_step:  # best.pt and last.pt of the same step are the same model
                task = bar.add_task(f"deciding post-processing on {split} ({p.name})", total=len(idx))
                model = ckpt.build_model(ck, p).to(device)
                by_step[step] = decide(model, store, idx, device, step, progress=lambda n, t=task: bar.advance(t, n))
            out[p.name] = by_step[step]
    for p in paths:
        record(p, out[p.name])
    write_file(run_dir / RECORD_FILE, json.dumps(out, indent=1) + "\n")
    return out
