"""``shapepu``: positive-unlabelled learning regularised by global consistency (Zhang and Zhuang, MICCAI
2022, "ShapePU: A New PU Learning Framework Regularized by Global Consistency for Scribble Supervised
Cardiac Segmentation", arXiv 2206.02118; the step of https://github.com/BWGZK/ShapePU, engine.py).

Each iteration, beside the partial CE on the scribbles:
- **a cut-out, transformed copy**: one square hole (``shapepu_hole`` of the image side) is blanked out
  of each image (its scribble pixels become unknown), then each is rotated by a random angle and
  flipped at random; the partial CE on its transformed scribbles, and the **global consistency**
  loss: 1 - cosine similarity (over classes) between the prediction of the image and the prediction
  of the copy transformed back, outside the hole, weighted by ``shapepu_consistency_weight``;
- **the PU term**, after ``shapepu_pu_start`` of the run: the mixture ratio of each class among the
  unlabelled pixels is estimated by EM (Saerens et al. 2002) from the network's predictions (in
  evaluation mode) and the scribbles' class frequencies; for each foreground class c, the unlabelled
  pixels below the (1 - ratio_c) quantile of p_c are taken as not c, and -log of their probability
  of the classes not excluded is minimised (weight ``shapepu_pu_weight``).

Departures: the authors' code runs the EM on the probabilities of the *labelled* pixels (whose
mixture is the scribbles' own, known) and applies the ratios to the unlabelled ones; the EM here runs
on the unlabelled pixels, whose mixture it is meant to estimate. Images are rotated bilinearly (the
authors: nearest), filled with each image's minimum (the normalised background) like every other
augmentation here; the consistency loss leaves out pixels the back-rotation brings from outside the
image (constant there, without gradient, in the original).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from datakit.constants import IGNORE
from train.augment import rotation_theta, warp_image, warp_labels
from train.methods.context import StepContext

Batch = dict[str, dict[str, torch.Tensor]]


def flip_rotate(batch: int, device: torch.device, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(forward, back) affine_grid thetas (B, 2, 3): a rotation by a random angle in [0, 360) degrees in
    pixel space, then a random flip (none, horizontal, vertical, both), and its inverse."""
    angle = torch.rand(batch, device=device) * 2 * math.pi
    flips = torch.randint(4, (batch,), device=device)
    f = torch.stack([1 - 2 * (flips % 2), 1 - 2 * (flips // 2)], 1).float()  # (B, 2): x, y signs
    zero = torch.zeros(batch, 2, device=device)
    rot, inv = rotation_theta(angle, zero, size)[:, :, :2], rotation_theta(-angle, zero, size)[:, :, :2]
    fwd = rot * f[:, None, :]  # sample at R (F p): flip the output coordinates, then rotate
    back = f[:, :, None] * inv  # the inverse: F R^-1
    pad = torch.zeros(batch, 2, 1, device=device)
    return torch.cat([fwd, pad], 2), torch.cat([back, pad], 2)


def cutout(x: torch.Tensor, y: torch.Tensor, side: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One square hole of ``side`` x the image size per image, at a random centre (clipped at the border):
    (images with the hole at their minimum, labels with it unknown, (B, 1, H, W) mask: 1 outside it)."""
    b, _, h, w = x.shape
    n = max(1, int(round(side * min(h, w))))
    cy = torch.randint(h, (b, 1, 1), device=x.device)
    cx = torch.randint(w, (b, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device)[None, :, None]
    cols = torch.arange(w, device=x.device)[None, None, :]
    hole = (rows >= cy - n // 2) & (rows < cy + n // 2) & (cols >= cx - n // 2) & (cols < cx + n // 2)
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    return (torch.where(hole[:, None], lo, x), torch.where(hole, torch.full_like(y, IGNORE), y),
            (~hole[:, None]).float())


def class_priors(probs: torch.Tensor, unlabelled: torch.Tensor, labelled_freq: torch.Tensor,
                 iterations: int = 100) -> torch.Tensor:
    """EM estimate (K,) of the class mixture among the ``unlabelled`` pixels (B, H, W bool) from softmax
    ``probs`` (B, K, H, W) of a classifier trained at class frequencies ``labelled_freq`` (K,): the prior
    adjustment of Saerens, Latinne and Decaestecker (Neural Computation 2002). A fixed number of steps,
    so no step waits for the device (it converges to 1e-3 in a few)."""
    p = probs.permute(1, 0, 2, 3)[:, unlabelled]  # (K, N)
    pi = labelled_freq.clamp_min(1e-6)
    prior = pi.clone()
    for _ in range(iterations):
        w = p * (prior / pi)[:, None]
        prior = (w / w.sum(0, keepdim=True).clamp_min(1e-12)).mean(1)
    return prior


def pu_negative_loss(probs: torch.Tensor, unlabelled: torch.Tensor, ratios: torch.Tensor) -> torch.Tensor:
    """ShapePU's negative loss: for each foreground class c, unlabelled pixels whose p_c is below the
    (1 - ratio_c) quantile of p_c over the batch's unlabelled pixels are "not c"; over the pixels not
    some class, the mean of -log (the probability of the classes not excluded)."""
    excluded = torch.zeros_like(probs, dtype=torch.bool)
    for c in range(1, probs.shape[1]):
        values = probs[:, c][unlabelled].detach()
        if values.numel() == 0:
            continue
        q = (1 - ratios[c]).clamp(0, 1).to(values.dtype)
        excluded[:, c] = (probs[:, c].detach() < torch.quantile(values, q)) & unlabelled
    flagged = excluded.any(dim=1)
    allowed = (probs * (~excluded)).sum(dim=1)
    return -(flagged * torch.log(allowed + 1e-12)).sum() / flagged.sum().clamp_min(1)


def step(ctx: StepContext, batch: Batch) -> dict[str, torch.Tensor]:
    o, n = ctx.opts, ctx.nets
    s = batch["scribble"]
    x, y = ctx.augment(s["images"], s["scribbles"])
    ls = s["label_state"]
    x_cut, y_cut, outside = cutout(x, y, o.shapepu_hole)
    fwd, back = flip_rotate(x.shape[0], x.device, tuple(x.shape[-2:]))
    x_cut, y_cut = warp_image(x_cut, fwd), warp_labels(y_cut, fwd, IGNORE)
    if x.is_contiguous(memory_format=torch.channels_last):  # the layout the nets run in
        x_cut = x_cut.contiguous(memory_format=torch.channels_last)
    with ctx.autocast():
        out = n.model(x)
        out_cut = n.model(x_cut)
    ce = ctx.scribble_ce(out.logits, y, ls)
    ce_cut = ctx.scribble_ce(out_cut.logits, y_cut, ls)
    p = torch.softmax(out.logits.float(), dim=1)
    p_back = F.grid_sample(torch.softmax(out_cut.logits.float(), dim=1),
                           F.affine_grid(back, list(p.shape), align_corners=False), mode="bilinear",
                           padding_mode="zeros", align_corners=False)
    seen = F.grid_sample(torch.ones_like(p[:, :1]), F.affine_grid(back, [p.shape[0], 1, *p.shape[2:]],
                         align_corners=False), mode="nearest", padding_mode="zeros", align_corners=False)
    consistency = ((1 - F.cosine_similarity(p, p_back, dim=1, eps=1e-8)) * (outside * seen)[:, 0]).mean()
    total = ce + ce_cut + o.shapepu_consistency_weight * consistency
    parts = {"loss/ce": ce, "loss/ce_cut": ce_cut, "loss/consistency": consistency, "loss/pu": torch.zeros((),
             device=x.device)}
    if ctx.step >= o.shapepu_pu_start * ctx.cfg.max_steps:
        unlabelled = y == IGNORE
        known = ~unlabelled
        freq = torch.zeros(ctx.num_classes, device=x.device).index_add_(
            0, torch.where(known, y.long(), 0).flatten(), known.flatten().float())
        freq = freq / freq.sum().clamp_min(1)
        raw = n.raw_model
        was = raw.training
        raw.eval()  # the ratios from the network in evaluation mode, as the authors
        try:
            with torch.no_grad(), ctx.autocast():
                q = torch.softmax(raw(x).logits.float(), dim=1)
        finally:
            raw.train(was)
        ratios = class_priors(q, unlabelled, freq, o.shapepu_em_iterations)
        pu = pu_negative_loss(p, unlabelled, ratios)
        total = total + o.shapepu_pu_weight * pu
        parts["loss/pu"] = pu
    return ctx.step_g(total, parts)
