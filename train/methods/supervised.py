"""``pce`` (partial cross-entropy on scribbles: class-weighted as MAAG's baseline, ``--scribble-weights`` to choose) and
``full`` (cross-entropy on full masks)."""

from __future__ import annotations

import torch

from train.losses import partial_ce
from train.methods.context import StepContext

Batch = dict[str, dict[str, torch.Tensor]]


def step_pce(ctx: StepContext, batch: Batch) -> dict[str, torch.Tensor]:
    s = batch["scribble"]
    x, y = ctx.augment(s["images"], s["scribbles"])
    with ctx.autocast():
        out = ctx.nets.model(x)
    ce = ctx.scribble_ce(out.logits, y, s["label_state"])
    return ctx.step_g(ce, {"loss/ce": ce})


def step_full(ctx: StepContext, batch: Batch) -> dict[str, torch.Tensor]:
    s = batch["full"]
    x, y = ctx.augment(s["images"], s["masks"])
    with ctx.autocast():
        out = ctx.nets.model(x)
    ce = partial_ce(out.logits, y, weighted=False, label_state=s["label_state"])
    return ctx.step_g(ce, {"loss/ce": ce})
