"""Partial cross-entropy on scribbles + one regulariser of the whole prediction (WSL4MIS's scripts):
``em`` (entropy minimisation), ``tv`` (total variation), ``gatedcrf`` (the gated CRF loss),
``mumford_shah`` (the Mumford-Shah functional). The regulariser sees every pixel of the augmented
images, labelled or not; its weight is constant over the run, as in the authors' code."""

from __future__ import annotations

from collections.abc import Callable

import torch

from train.losses import entropy, gated_crf, mumford_shah, total_variation
from train.methods.context import StepContext

Batch = dict[str, dict[str, torch.Tensor]]


def _pce_plus(ctx: StepContext, batch: Batch, name: str, weight: float,
              term: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor]:
    s = batch["scribble"]
    x, y = ctx.augment(s["images"], s["scribbles"])
    with ctx.autocast():
        out = ctx.nets.model(x)
    ce = ctx.scribble_ce(out.logits, y, s["label_state"])
    reg = term(torch.softmax(out.logits.float(), dim=1), x)
    return ctx.step_g(ce + weight * reg, {"loss/ce": ce, f"loss/{name}": reg})


def step_em(ctx: StepContext, batch: Batch) -> dict[str, torch.Tensor]:
    return _pce_plus(ctx, batch, "entropy", ctx.opts.em_weight, lambda p, x: entropy(p))


def step_tv(ctx: StepContext, batch: Batch) -> dict[str, torch.Tensor]:
    return _pce_plus(ctx, batch, "tv", ctx.opts.tv_weight, lambda p, x: total_variation(p))


def step_gatedcrf(ctx: StepContext, batch: Batch) -> dict[str, torch.Tensor]:
    o = ctx.opts
    return _pce_plus(ctx, batch, "crf", o.crf_weight,
                     lambda p, x: gated_crf(p, x, o.crf_radius, o.crf_sigma_xy, o.crf_sigma_intensity))


def step_mumford_shah(ctx: StepContext, batch: Batch) -> dict[str, torch.Tensor]:
    return _pce_plus(ctx, batch, "ms", ctx.opts.ms_weight, mumford_shah)
