"""Batched augmentation on the training device: one random affine warp per sample, then intensity.

Images: bilinear, rotation up to +-90 deg, translation up to 10 % of the size, brightness +-0.025,
contrast x0.95-1.05, Gaussian noise sigma 0.02 (the authors' magnitudes, docs/maag.md). Labels share the
image's warp, sampled nearest so no new label values appear; pixels that come from outside the
image become ``fill`` (255 for scribbles: unknown; 0 for masks).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def rotation_theta(angle: torch.Tensor, shift: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 2, 3) theta for ``F.affine_grid``: rotation by ``angle`` (radians) in pixel space.

    affine_grid's coordinates are normalised per axis (x spans W pixels, y spans H, each from -1
    to 1), so a plain rotation matrix would shear a non-square image. In pixels (X = x W/2,
    Y = y H/2) the rotation is exact when the off-diagonal terms carry the aspect ratio:
    x_in = cos x - sin (H/W) y, y_in = sin (W/H) x + cos y. ``shift`` (B, 2) is in normalised
    coordinates (x, y).
    """
    h, w = size
    cos, sin = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([cos, -sin * (h / w), shift[:, 0]], 1),
                        torch.stack([sin * (w / h), cos, shift[:, 1]], 1)], 1)


def random_affine(batch: int, device: torch.device, rotation_deg: float = 90.0, translate: float = 0.1,
                  generator: torch.Generator | None = None, size: tuple[int, int] = (1, 1)) -> torch.Tensor:
    """(B, 2, 3) theta for ``F.affine_grid``: rotation in [-r, r], shift in [-t, t] of the size.

    ``size`` (H, W) of the images the theta is for: rotations are in pixel space (no shear).
    """
    u = torch.rand(batch, 3, device=device, generator=generator) * 2 - 1
    a = u[:, 0] * math.radians(rotation_deg)
    shift = u[:, 1:] * translate * 2  # normalised coordinates span 2 per image size
    return rotation_theta(a, shift, size)


def warp_image(img: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Bilinear warp; outside pixels take each image's minimum (the normalised background)."""
    lo = img.amin(dim=(1, 2, 3), keepdim=True)
    grid = F.affine_grid(theta.to(img.dtype), list(img.shape), align_corners=False)
    return F.grid_sample(img - lo, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + lo


def warp_labels(lab: torch.Tensor, theta: torch.Tensor, fill: int) -> torch.Tensor:
    """Nearest warp of integer maps (B, H, W); outside pixels become ``fill``."""
    x = (lab.float() + 1).unsqueeze(1)  # +1 so that zero padding marks "outside"
    grid = F.affine_grid(theta.float(), list(x.shape), align_corners=False)
    y = F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False).squeeze(1)
    out = y.round().long() - 1
    return torch.where(out < 0, torch.full_like(out, fill), out).to(lab.dtype)


def intensity(img: torch.Tensor, brightness: float = 0.025, contrast: float = 0.05, noise: float = 0.02,
              generator: torch.Generator | None = None) -> torch.Tensor:
    b = img.shape[0]
    shape = (b, 1, 1, 1)
    c = 1 + (torch.rand(shape, device=img.device, generator=generator) * 2 - 1) * contrast
    s = (torch.rand(shape, device=img.device, generator=generator) * 2 - 1) * brightness
    n = torch.randn(img.shape, device=img.device, generator=generator) * noise
    return img * c + s + n


def augment_pair(img: torch.Tensor, labels: list[tuple[torch.Tensor, int]],
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Warp images and their label maps (each with its fill value) together, then intensity."""
    theta = random_affine(img.shape[0], img.device, generator=generator, size=tuple(img.shape[-2:]))
    out = [warp_labels(lab, theta, fill) for lab, fill in labels]
    return intensity(warp_image(img, theta), generator=generator), out


def augment_masks(mask: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Unpaired masks for the discriminator: rotation and translation only."""
    theta = random_affine(mask.shape[0], mask.device, generator=generator, size=tuple(mask.shape[-2:]))
    return warp_labels(mask, theta, 0)
