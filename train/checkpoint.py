"""Checkpoints: plain dicts of tensors and numbers, loadable with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from datakit.errors import DatakitError
from train.model import AttentionUNet

FORMAT = "datakit-train-checkpoint"
# 2: the authors' MAAG (gates in all four decoder blocks from conv2; their discriminator's 13-channel
# squeeze and dense head). Version-1 weights do not fit these networks.
VERSION = 2
OLD_VERSIONS = {1: "gates in three decoder blocks and a 1x1-conv discriminator head"}


def save(path: Path, payload: dict[str, Any]) -> None:
    """Write to a temporary file beside ``path`` and rename: a crash never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save({"format": FORMAT, "version": VERSION, **payload}, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load(path: Path) -> dict[str, Any]:
    """A checkpoint's dict, tensors on the CPU; a missing, unreadable or foreign file is a DatakitError."""
    if not path.is_file():
        raise DatakitError("no such checkpoint", path)
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a foreign or truncated file
        raise DatakitError(f"not a readable checkpoint ({type(e).__name__}: {str(e).splitlines()[0]})",
                           path) from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise DatakitError(f"not a train checkpoint (format {ck.get('format') if isinstance(ck, dict) else None!r})",
                           path)
    version = ck.get("version")
    if version != VERSION:
        if version in OLD_VERSIONS:
            raise DatakitError(f"written by an older train (checkpoint version {version}: {OLD_VERSIONS[version]}); "
                               f"the architecture has changed since (version {VERSION}: the authors' MAAG), so "
                               "its weights cannot be loaded: train again, or use the datakit release that wrote it",
                               path)
        raise DatakitError(f"checkpoint version {version!r} is not one this train reads (it reads {VERSION})", path)
    return ck


def weights_only(ck: dict[str, Any], half: bool = True) -> dict[str, Any]:
    """The part of a checkpoint that ``train eval`` and ``train predict`` read: the segmentor's weights
    (half precision by default: a width-32 model is ~15 MiB instead of ~30), its config, classes and
    step; no discriminator, optimisers or RNG states, so ``--resume`` cannot use it."""
    keep = ("format", "version", "step", "method", "classes", "model_config", "config", "image_size", "best_dice",
            "best_step")
    out = {k: ck[k] for k in keep if k in ck}
    out["model"] = {k: (v.half() if half and v.is_floating_point() else v) for k, v in ck["model"].items()}
    out["weights_only"] = True
    return out


def build_model(ck: dict[str, Any]) -> AttentionUNet:
    cfg = ck["model_config"]
    model = AttentionUNet(int(cfg["in_channels"]), int(cfg["classes"]), int(cfg["width"]))
    model.load_state_dict(ck["model"])
    return model.eval()


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
