"""``maag``: the multi-scale adversarial attention gates of Valvano et al. 2021 (docs/maag.md).

Each iteration: the discriminator step first, on detached predictions of the unlabelled images
(fake) against unpaired masks (real); then the segmentor step against the updated discriminator,
whose weights are frozen meanwhile: the class-weighted partial CE on scribbles, dynamically weighted
against the generator's LSGAN loss (w = |sg(g / ce)|), plus ``adv_weight`` x g.
"""

from __future__ import annotations

import torch

from train.augment import augment_masks
from train.discriminator import fake_scales, real_scales
from train.losses import dynamic_weighting, lsgan_d, lsgan_g
from train.methods.context import StepContext

Batch = dict[str, dict[str, torch.Tensor]]


def step(ctx: StepContext, batch: Batch) -> dict[str, torch.Tensor]:
    opts, n = ctx.opts, ctx.nets
    s = batch["scribble"]
    x, y = ctx.augment(s["images"], s["scribbles"])
    xu, _ = ctx.augment(batch["unlabelled"]["images"])
    m = batch["masks"]["masks"]
    if ctx.cfg.augment:
        m = augment_masks(m)
    b = x.shape[0]
    with ctx.autocast():
        out = n.model(torch.cat([x, xu]))
    probs_u = torch.softmax(out.logits[b:].float(), dim=1)
    fake = fake_scales(probs_u, [g[b:] for g in out.multiscale])
    real = real_scales(m, ctx.num_classes)
    with ctx.autocast():  # one D call on real and fake together; instance noise is the D's own (full scale)
        scores = n.disc([torch.cat([r, f.detach()]) for r, f in zip(real, fake, strict=True)])
    loss_d = lsgan_d(scores[:len(m)], scores[len(m):], opts.label_flip)
    ctx.step_d(loss_d)
    with ctx.frozen_disc(), ctx.autocast():  # no D weight gradients in the G step: only the fake path
        g = lsgan_g(n.disc_g(fake))
    ce = ctx.scribble_ce(out.logits[:b], y, s["label_state"])
    total, w = dynamic_weighting(ce, g, opts.adv_weight)
    return ctx.step_g(total, {"loss/ce": ce, "loss/adv": opts.adv_weight * g.detach(), "loss/disc": loss_d.detach(),
                              "loss/ce_weight": w})
