"""Prediction over whole volumes and evaluation (3D Dice, HD95 mm) of a checkpoint on a split."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from datakit.store import Store
from train.metrics import Volume, summarise, volume_scores, volumes


def autocast(device: torch.device):
    """bf16 autocast on CUDA; full precision on CPU (bf16 there is slow and gains nothing)."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


@torch.no_grad()
def predict_volume(model: torch.nn.Module, store: Store, vol: Volume, device: torch.device,
                   batch: int = 32) -> np.ndarray:
    """Label map (Z, H, W) uint8 of one volume, argmax of the final softmax."""
    images = store.file["images"]
    out = []
    for s in range(0, len(vol.indices), batch):
        idx = vol.indices[s:s + batch]
        x = torch.from_numpy(np.stack([images[int(i)] for i in idx])).to(device)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device):
            logits = model(x).logits
        out.append(logits.argmax(1).to(torch.uint8).cpu().numpy())
    return np.concatenate(out)


def iter_predictions(model: torch.nn.Module, store: Store, indices: np.ndarray,
                     device: torch.device) -> Iterator[tuple[Volume, np.ndarray]]:
    was_training = model.training
    model.eval()
    try:
        for vol in volumes(store, indices):
            yield vol, predict_volume(model, store, vol, device)
    finally:
        model.train(was_training)


def evaluate(model: torch.nn.Module, store: Store, indices: np.ndarray, device: torch.device,
             with_hd: bool = True) -> dict[str, Any]:
    """Per-volume scores and their mean/std; the JSON of ``train eval`` less split/checkpoint names."""
    classes = store.classes
    masks = store.file["masks"]
    rows = []
    for vol, pred in iter_predictions(model, store, indices, device):
        ref = np.stack([masks[int(i)] for i in vol.indices])
        scores = volume_scores(pred, ref, vol.spacing, classes, with_hd=with_hd)
        rows.append({**vol.key, "slices": len(vol.indices), **scores})
    dice, dice_std = summarise(rows, classes, "dice")
    out: dict[str, Any] = {"volumes": len(rows), "dice": dice, "dice_std": dice_std}
    if with_hd:
        out["hd95_mm"], out["hd95_mm_std"] = summarise(rows, classes, "hd95_mm")
    out["per_patient"] = [_clean(r) for r in rows]
    return out


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    """NaN -> None so the JSON is strict."""
    def fix(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, float) and not np.isfinite(v):
            return None
        return v
    return fix(row)
