"""Losses of MAAG: class-weighted partial cross-entropy, least-squares GAN, dynamic weighting."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from datakit.constants import IGNORE

EPS = 1e-6
MASKED_LOGIT = -1e4  # exp(-1e4) underflows to 0 in float32: the class gets no probability, the loss stays finite


def ignore_unknown_classes(target: torch.Tensor, label_state: torch.Tensor, ignore: int = IGNORE) -> torch.Tensor:
    """Set pixels labelled with a class whose label_state is -1 (unknown) to ``ignore``.

    target (B, H, W) integer, label_state (B, K) int8. A class not annotated in a sample must not
    be learnt from it, neither as itself nor as "not the others".
    """
    t = target.long()
    unknown = (label_state < 0).to(t.device)  # (B, K); always applied: a host check would sync every step
    safe = torch.where(t == ignore, 0, t).clamp_max(unknown.shape[1] - 1)
    drop = torch.gather(unknown, 1, safe.flatten(1)).view_as(t) & (t != ignore)
    return torch.where(drop, torch.full_like(t, ignore), t)


def mask_unknown_logits(logits: torch.Tensor, label_state: torch.Tensor) -> torch.Tensor:
    """Per sample, set the logits of classes whose label_state is -1 to a large negative value.

    logits (B, K, H, W), label_state (B, K). A class never annotated in a sample sits in that
    sample's background (merged stores, Unity's blurred structures), so setting its pixels to 255
    is not enough: without the mask, every labelled pixel would teach "not this class". Masked
    logits get no gradient and no probability mass in the cross-entropy.
    """
    unknown = (label_state < 0).to(logits.device)
    return logits.masked_fill(unknown[:, :, None, None], MASKED_LOGIT)


def class_weights(target: torch.Tensor, classes: int, ignore: int = IGNORE) -> torch.Tensor:
    """MAAG's weights N_total / (N_c + eps) from the batch's labelled pixel counts.

    Counted with index_add_ into a spare bin for ``ignore``: no boolean indexing or bincount, whose
    output sizes depend on the data and make the host wait for the device.
    """
    t = target.reshape(-1).long()
    t = torch.where(t == ignore, classes, t).clamp(0, classes)
    counts = torch.zeros(classes + 1, device=t.device).index_add_(0, t, torch.ones_like(t, dtype=torch.float32))
    counts = counts[:classes]
    return counts.sum() / (counts + EPS)


def partial_ce(logits: torch.Tensor, target: torch.Tensor, weighted: bool = True,
               ignore: int = IGNORE, label_state: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy over labelled pixels only (``ignore`` skipped), class-weighted by default.

    With ``label_state`` (B, K), classes at -1 in a sample are ignored in it: their pixels become
    ``ignore`` and their logits are masked (``mask_unknown_logits``).
    The mean is the weighted sum over labelled pixels divided by their summed weights (as
    ``F.cross_entropy``), computed so that no labelled pixel gives 0 (with a gradient path) rather
    than NaN, without asking the device whether any pixel is labelled.
    """
    logits = logits.float()
    if label_state is not None:
        target = ignore_unknown_classes(target, label_state, ignore)
        logits = mask_unknown_logits(logits, label_state)
    t = target.long()
    k = logits.shape[1]
    w = class_weights(t, k, ignore) if weighted else torch.ones(k, device=logits.device)
    nll = F.cross_entropy(logits, t, weight=w, ignore_index=ignore, reduction="none")  # 0 where ignored
    labelled = t != ignore
    denom = (w[torch.where(labelled, t, 0).clamp(0, k - 1)] * labelled).sum()
    return nll.sum() / denom.clamp_min(EPS)


def lsgan_d(real: torch.Tensor, fake: torch.Tensor, flip_p: float = 0.0) -> torch.Tensor:
    """Discriminator's least-squares loss, targets +1 real and -1 fake.

    Label noise as the authors: with probability ``flip_p`` the whole real batch's targets are
    swapped, and independently the whole fake batch's (their code flips the sign of one
    discriminator call's output at a time; flipping the targets gives the intended gradient, where
    their identity-gradient sign flip does not). The coins stay on the device: no host sync.
    """
    t_real, t_fake = torch.ones_like(real, dtype=torch.float32), -torch.ones_like(fake, dtype=torch.float32)
    if flip_p > 0:
        coins = torch.rand(2, device=real.device) < flip_p
        t_real = torch.where(coins[0], -t_real, t_real)
        t_fake = torch.where(coins[1], -t_fake, t_fake)
    return 0.5 * ((real.float() - t_real) ** 2).mean() + 0.5 * ((fake.float() - t_fake) ** 2).mean()


def lsgan_g(fake: torch.Tensor) -> torch.Tensor:
    """Generator's least-squares loss 0.5 (D(fake) - 1)^2."""
    return 0.5 * ((fake.float() - 1.0) ** 2).mean()


def dynamic_weighting(ce: torch.Tensor, g: torch.Tensor, adv_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """MAAG: total = w * ce + adv_weight * g with w = |stop_grad(g / ce)|.

    ``g`` is the generator's LSGAN loss, NOT multiplied by the adversarial weight: the ratio makes
    the rescaled scribble loss as large as g, and ``adv_weight`` then sets the adversarial term's
    share of the total (adv_weight 0: the rescaled scribble loss alone). Returns (total, w).
    """
    w = (g.detach() / (ce.detach() + EPS)).abs()
    return w * ce + adv_weight * g, w
