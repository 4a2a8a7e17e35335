"""Prediction over whole volumes and evaluation (3D Dice, HD95 mm) of a checkpoint on a split."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datakit.stats import json_safe
from datakit.store import Store
from train.metrics import Volume, summarise, volume_scores, volumes


@functools.cache
def native_cpu_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX-512 BF16 or AMX): there bf16 autocast is faster
    than fp32; elsewhere it is emulated and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def use_bf16(device: torch.device, precision: str = "auto") -> bool:
    """Whether to run in bf16 autocast: ``precision`` bf16 | fp32 | auto (CUDA with bf16, native CPUs)."""
    if precision in ("bf16", "fp32"):
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and native_cpu_bf16()


def autocast(device: torch.device, bf16: bool | None = None):
    """bf16 autocast when ``bf16`` (default: ``use_bf16(device)``), else full precision."""
    if bf16 is None:
        bf16 = use_bf16(device)
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


@torch.no_grad()
def predict_volume(model: torch.nn.Module, store: Store, vol: Volume, device: torch.device,
                   batch: int = 32) -> np.ndarray:
    """Label map (Z, H, W) uint8 of one volume, argmax of the final softmax."""
    images = store.file["images"]
    return predict_images(model, lambda s, e: np.stack([images[int(i)] for i in vol.indices[s:e]]),
                          len(vol.indices), device, batch)


@torch.no_grad()
def predict_images(model: torch.nn.Module, images: np.ndarray | Callable[[int, int], np.ndarray], n: int,
                   device: torch.device, batch: int = 32) -> np.ndarray:
    """Label maps (N, H, W) uint8 of ``n`` images (N, C, H, W), in batches of ``batch``; ``images`` an
    array or a function ``(start, end) -> array`` (read a batch at a time). A store's volume and a new
    scan (``train/scans.py``) are predicted by this one function, batch for batch alike."""
    read = images if callable(images) else (lambda s, e: images[s:e])
    out = []
    for s in range(0, n, batch):
        x = torch.from_numpy(np.ascontiguousarray(read(s, min(s + batch, n)))).to(device)
        out.append(labels(model, x, device, use_bf16(device)).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0,), np.uint8)


def labels(model: torch.nn.Module, x: torch.Tensor, device: torch.device, bf16: bool) -> torch.Tensor:
    """Label maps (B, H, W) uint8 on ``device``: argmax of the final logits of images ``x`` (any
    float dtype: float16 stores are cast), channels_last wherever the nets run in that layout."""
    x = x.float()
    if bf16 or device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(device, bf16):
        return model(x).logits.argmax(1).to(torch.uint8)


def iter_predictions(model: torch.nn.Module, store: Store, indices: np.ndarray, device: torch.device,
                     progress: Callable[[int], None] | None = None) -> Iterator[tuple[Volume, np.ndarray]]:
    """Each volume of ``indices`` with its prediction; ``progress(slices)`` once the caller is done with it."""
    was_training = model.training
    model.eval()
    try:
        for vol in volumes(store, indices):
            yield vol, predict_volume(model, store, vol, device)
            if progress is not None:  # the caller has used (scored, written) this volume
                progress(len(vol.indices))
    finally:
        model.train(was_training)


def evaluate(model: torch.nn.Module, store: Store, indices: np.ndarray, device: torch.device,
             with_hd: bool = True, progress: Callable[[int], None] | None = None,
             postprocess: Sequence[int] | None = None) -> dict[str, Any]:
    """Per-volume scores and their mean/std; the JSON of ``train eval`` less split/checkpoint names.
    ``progress(slices)`` is called after each volume is predicted. ``postprocess``: class indices whose
    largest component alone is kept (:func:`train.postprocess.keep_largest`); the same predictions are
    then also scored post-processed, under ``"postprocessed"``."""
    from train.postprocess import keep_largest

    classes = store.classes
    masks = store.file["masks"]
    rows, pp_rows = [], []
    for vol, pred in iter_predictions(model, store, indices, device, progress):
        ref = np.stack([masks[int(i)] for i in vol.indices])
        scores = volume_scores(pred, ref, vol.spacing, classes, with_hd=with_hd)
        rows.append({**vol.key, "slices": len(vol.indices), **scores})
        if postprocess is not None:
            pp = keep_largest(pred, vol.spacing, postprocess)
            pp_rows.append({**vol.key, "slices": len(vol.indices),
                            **volume_scores(pp, ref, vol.spacing, classes, with_hd=with_hd)})
    out = summary(rows, classes, with_hd)
    if postprocess is not None:
        out["postprocessed"] = summary(pp_rows, classes, with_hd)
    return out


def summary(rows: list[dict[str, Any]], classes: list[str], with_hd: bool) -> dict[str, Any]:
    """Means and stds over the volumes' rows, and the rows themselves (strict JSON: NaN -> null)."""
    dice, dice_std = summarise(rows, classes, "dice")
    out: dict[str, Any] = {"volumes": len(rows), "dice": dice, "dice_std": dice_std}
    if with_hd:
        out["hd95_mm"], out["hd95_mm_std"] = summarise(rows, classes, "hd95_mm")
    out["per_patient"] = [json_safe(r) for r in rows]
    return out


class ResidentSplit:
    """A split held on the device for repeated validation: images once, predictions in batches,
    one device-to-host copy per evaluation; masks and volumes stay on the host for the metrics."""

    def __init__(self, store: Store, indices: np.ndarray, device: torch.device, batch: int = 64):
        self.classes, self.device, self.batch = store.classes, device, batch
        self.vols = volumes(store, indices)
        order = np.concatenate([v.indices for v in self.vols]) if self.vols else np.zeros(0, np.int64)
        self.order = order
        self.images = torch.from_numpy(store.rows("images", order)).to(device)
        self.masks = store.rows("masks", order)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, bf16: bool, with_hd: bool = False) -> dict[str, Any]:
        was_training = model.training
        model.eval()
        try:
            preds = [labels(model, self.images[s:s + self.batch], self.device, bf16)
                     for s in range(0, len(self.order), self.batch)]
            pred = torch.cat(preds).cpu().numpy() if preds else np.zeros((0,), np.uint8)  # the one sync
        finally:
            model.train(was_training)
        rows, at = [], 0
        for vol in self.vols:
            n = len(vol.indices)
            scores = volume_scores(pred[at:at + n], self.masks[at:at + n], vol.spacing, self.classes, with_hd=with_hd)
            rows.append({**vol.key, "slices": n, **scores})
            at += n
        return summary(rows, self.classes, with_hd)
