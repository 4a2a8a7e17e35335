"""Post-processing decided for a run's checkpoints, or one checkpoint, and recorded in them (and in
``RUN/postprocessing.json``): what ``train run`` does at its end and ``train postprocess`` on demand.
The operation, the rule and the record's format are train/postprocess.py's."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from datakit.errors import DatakitError
from datakit.stats import json_safe
from train import checkpoint as ckpt
from train.postprocess import OPERATION, RECORD_FILE, RULE, recorded


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
    ck = ckpt.load(path)
    payload = {k: v for k, v in ck.items() if k not in ("format", "version")}
    payload["postprocessing"] = decision
    if plan is not None:
        payload["plan"] = plan
    ckpt.save(path, payload)



def decide_for_run(run_dir: Path, store_path: Path, split: str, device: Any, overwrite: bool = True,
                   log: Callable[[str], None] = print, progress: bool | None = None) -> dict[str, Any] | None:
    """Decide for ``RUN/checkpoints/best.pt`` and ``last.pt`` (each on its own predictions of ``split``)
    and record it in both and in ``RUN/postprocessing.json``. None, with a note, when the store has
    no such split or it is empty. ``overwrite`` False refuses checkpoints that already hold a decision."""
    from datakit.progress import progress_bar
    from datakit.safe_io import write_file
    from datakit.store import Store

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
