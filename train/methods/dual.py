"""Two decoders on one encoder, partial CE on both, plus supervision by their dynamically mixed
predictions (the auxiliary decoder sees the encoder features through dropout2d(0.5)):

- ``dmpls`` (Luo et al., MICCAI 2022, "Scribble-supervised medical image segmentation via dual-branch
  network and dynamically mixed pseudo labels supervision"; WSL4MIS's
  train_weakly_supervised_segmentation_pCE_ours_proposed.py): the hard pseudo label
  argmax(beta p1 + (1 - beta) p2), beta ~ U(0, 1) each iteration, supervises both decoders through
  the Dice loss, weight 0.5;
- ``dmsps`` (Han et al., MedIA 2024, "DMSPS: dynamically mixed soft pseudo-label supervision"; PyMIC's
  wsl_dmsps.py, its first stage): the soft mix alpha p1 + (1 - alpha) p2 itself supervises both
  through the cross-entropy, weight 8 after a sigmoid ramp-up over the run. (The paper's second stage,
  retraining on scribbles expanded with confident pseudo labels, is not part of this method.)

Inference uses the main decoder.
"""

from __future__ import annotations

import torch

from train.losses import dice_loss, mixed_pseudo_label, soft_ce
from train.methods.context import StepContext

Batch = dict[str, dict[str, torch.Tensor]]


def _both(ctx: StepContext, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean partial CE of both decoders, main softmax, auxiliary softmax)."""
    s = batch["scribble"]
    x, y = ctx.augment(s["images"], s["scribbles"])
    with ctx.autocast():
        out = ctx.nets.model(x, aux=True)
    ce = 0.5 * (ctx.scribble_ce(out.logits, y, s["label_state"]) + ctx.scribble_ce(out.aux_logits, y, s["label_state"]))
    return ce, torch.softmax(out.logits.float(), dim=1), torch.softmax(out.aux_logits.float(), dim=1)


def step_dmpls(ctx: StepContext, batch: Batch) -> dict[str, torch.Tensor]:
    ce, p1, p2 = _both(ctx, batch)
    beta = torch.rand((), device=p1.device)  # on the device: no sync
    label = mixed_pseudo_label(p1, p2, beta)
    pseudo = 0.5 * (dice_loss(p1, label) + dice_loss(p2, label))
    return ctx.step_g(ce + ctx.opts.dmpls_weight * pseudo, {"loss/ce": ce, "loss/pseudo": pseudo})


def step_dmsps(ctx: StepContext, batch: Batch) -> dict[str, torch.Tensor]:
    ce, p1, p2 = _both(ctx, batch)
    alpha = torch.rand((), device=p1.device)
    soft = (alpha * p1 + (1 - alpha) * p2).detach()
    pseudo = 0.5 * (soft_ce(p1, soft) + soft_ce(p2, soft))
    weight = ctx.opts.dmsps_weight * ctx.ramp(ctx.opts.dmsps_rampup)
    return ctx.step_g(ce + weight * pseudo, {"loss/ce": ce, "loss/pseudo": pseudo})
