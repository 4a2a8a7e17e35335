"""Losses: MAAG's (class-weighted partial cross-entropy, least-squares GAN, dynamic weighting) and the
terms the other scribble methods add to the partial cross-entropy (entropy, total variation, the
gated CRF loss, the Mumford-Shah functional, Dice and soft cross-entropy on pseudo labels).

Every term on a prediction takes softmax probabilities (B, K, H, W) in float32; image-driven terms take
the images rescaled per image to [0, 1] (:func:`unit_range`), as the authors' data were.
"""

from __future__ import annotations

import math

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


# -- regularisers of the other scribble methods -------------------------------------------------------
def unit_range(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Each image (B, C, H, W) rescaled to [0, 1] by its own minimum and maximum (float32). The methods'
    authors normalised to [0, 1] (WSL4MIS's ACDC slices), so their intensity scales (the gated CRF's
    sigma, the Mumford-Shah centroids) hold on our percentile / IQR-normalised images too."""
    x = x.float()
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo + eps)


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Mean over pixels of the softmax's entropy, divided by log K (1 for a uniform prediction, 0 for a
    one-hot one): Grandvalet and Bengio's entropy minimisation, as WSL4MIS's entropy_loss (eps 1e-6)."""
    k = probs.shape[1]
    return (-(probs * torch.log(probs + 1e-6)).sum(dim=1) / math.log(k)).mean()


def total_variation(probs: torch.Tensor) -> torch.Tensor:
    """Mean soft contour length of the foreground channels: relu(opening - erosion) with a 3 x 3 min / max
    pool (WSL4MIS's tv_loss). Their script passes ``outputs_soft[1:]``, which drops the batch's first
    image; the foreground channels ``[:, 1:]`` are what it means, and what is used here."""
    p = probs[:, 1:]
    eroded = -F.max_pool2d(-p, 3, 1, 1)
    opened = F.max_pool2d(eroded, 3, 1, 1)
    return torch.relu(opened - eroded).mean()


def _unfold(x: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, d*d, H, W): each pixel's d x d neighbourhood, d = 2 radius + 1, zeros outside."""
    b, c, h, w = x.shape
    d = 2 * radius + 1
    return F.unfold(x, d, padding=radius).view(b, c, d * d, h, w)


def gated_crf(probs: torch.Tensor, images: torch.Tensor, radius: int = 5, sigma_xy: float = 6.0,
              sigma_intensity: float = 0.1) -> torch.Tensor:
    """The gated CRF loss with a Potts compatibility (Obukhov et al. 2019, arXiv 1906.04651; WSL4MIS's
    ModelLossSemsegGatedCRF): sum over pixel pairs i != j within ``radius`` of
    k(i, j) (1 - sum_c p_c(i) p_c(j)), with k a Gaussian of position (``sigma_xy`` pixels) and intensity
    (``sigma_intensity``, on ``images`` rescaled per image to [0, 1]), divided by the pixel count.
    Low when the label map changes only where the image does.

    Departure: the original unfolds with zero padding, so at the image border it pairs pixels with
    phantom neighbours at position (0, 0), intensity 0 and probability 0 (a penalty for being near a
    border); here neighbours outside the image are left out.
    """
    b, k, h, w = probs.shape
    yy, xx = torch.meshgrid(torch.arange(h, device=probs.device, dtype=torch.float32),
                            torch.arange(w, device=probs.device, dtype=torch.float32), indexing="ij")
    with torch.no_grad():  # the kernel depends on the image only: no gradient, no stored graph
        mesh = torch.stack([xx, yy])[None].expand(b, 2, h, w)
        feats = torch.cat([mesh / sigma_xy, unit_range(images) / sigma_intensity], dim=1)
        nb = _unfold(feats, radius)  # (B, F, d*d, H, W)
        kernel = torch.exp(-0.5 * ((nb - feats[:, :, None]) ** 2).sum(dim=1, keepdim=True))  # (B, 1, d*d, H, W)
        del nb
        kernel = kernel * _unfold(torch.ones(1, 1, h, w, device=probs.device), radius)  # 0 outside the image
        kernel[:, :, (2 * radius + 1) ** 2 // 2] = 0.0  # i != j
    agree = (kernel * _unfold(probs, radius)).sum(dim=2)  # (B, K, H, W): sum_j k(i, j) p_c(j)
    return (kernel.sum() - (agree * probs).sum()) / (b * h * w)


def mumford_shah(probs: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """The Mumford-Shah loss of Kim and Ye 2019 (arXiv 1904.02872), a mean per pixel: sum over classes c
    of (I - m_c)^2 p_c, with m_c = sum(I p_c) / sum(p_c) each class's mean intensity in the image, plus
    the L1 total variation of the softmax; I = the images rescaled per image to [0, 1], summed over
    channels.

    Departure: WSL4MIS calls ``levelsetLoss(image, prediction)`` where Kim and Ye's signature is
    (prediction, image), which swaps the roles (means of p weighted by I, (p - m)^2 I); the functional
    as the paper and Kim and Ye's code define it is used here.
    """
    img = unit_range(images)  # (B, Ci, H, W)
    b, _, h, w = probs.shape
    level = probs.new_zeros(())
    for c in range(probs.shape[1]):
        p = probs[:, c:c + 1]
        mean = (img * p).sum(dim=(2, 3), keepdim=True) / (p.sum(dim=(2, 3), keepdim=True) + 1e-6)
        level = level + (((img - mean) ** 2) * p).sum()
    tv = (probs[:, :, 1:] - probs[:, :, :-1]).abs().sum() + (probs[:, :, :, 1:] - probs[:, :, :, :-1]).abs().sum()
    return (level + tv) / (b * h * w)


def dice_loss(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice per class over the whole batch, averaged over all K classes (background included):
    (2 sum p t + s) / (sum p^2 + sum t^2 + s), s = 1e-5, t the one-hot of ``target`` (B, H, W);
    WSL4MIS's DiceLoss, which DMPLS uses on its pseudo labels."""
    k = probs.shape[1]
    t = F.one_hot(target.long(), k).permute(0, 3, 1, 2).to(probs.dtype)
    dims = (0, 2, 3)
    inter = (probs * t).sum(dims)
    dice = (2 * inter + 1e-5) / ((probs * probs).sum(dims) + (t * t).sum(dims) + 1e-5)
    return (1 - dice).mean()


def soft_ce(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of probabilities against soft labels, mean over pixels: -sum_c t_c log p_c with p
    squeezed into [5e-4, 0.9995] (PyMIC's CrossEntropyLoss, which DMSPS uses)."""
    return -(target * torch.log(probs * 0.999 + 5e-4)).sum(dim=1).mean()


def mixed_pseudo_label(p1: torch.Tensor, p2: torch.Tensor, beta: torch.Tensor | float) -> torch.Tensor:
    """DMPLS's hard pseudo label (B, H, W): argmax of beta p1 + (1 - beta) p2, both decoders' softmax."""
    return torch.argmax(beta * p1.detach() + (1 - beta) * p2.detach(), dim=1)
