"""Multi-scale discriminator of MAAG: sees a segmentation at full, 1/2, 1/4 and 1/8 resolution.

Level 0: 4x4 conv stride 2, 32 filters, LeakyReLU(0.2) on the full-resolution input. Each further
level injects the input of its scale (1x1 conv + sigmoid, concatenated), then a spectral-normed
4x4 conv (128, 256, 512 filters; strides 2, 2, 1) and tanh. A spectral-normed 1x1 conv to one channel,
averaged over space, gives one LSGAN score per image (averaging keeps it size-agnostic).
Inputs are foreground channels only (K - 1): softmax without background, or one-hot masks.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

INJECT = 16  # channels of each injected scale (the 1x1 conv + sigmoid)


class MultiScaleDiscriminator(nn.Module):
    def __init__(self, channels: int, width: int = 32):
        super().__init__()
        self.level0 = nn.Conv2d(channels, width, 4, stride=2, padding=1)
        self.inject = nn.ModuleList([nn.Conv2d(channels, INJECT, 1) for _ in range(3)])
        filters, strides = (4 * width, 8 * width, 16 * width), (2, 2, 1)
        cins = (width + INJECT, filters[0] + INJECT, filters[1] + INJECT)
        self.levels = nn.ModuleList([
            nn.Sequential(nn.ZeroPad2d((1, 1, 1, 1) if s == 2 else (1, 2, 1, 2)),  # (2, 2): 'same' size
                          spectral_norm(nn.Conv2d(cin, cout, 4, stride=s)))
            for cin, cout, s in zip(cins, filters, strides, strict=True)
        ])
        self.score = spectral_norm(nn.Conv2d(filters[2], 1, 1))

    def forward(self, scales: list[torch.Tensor]) -> torch.Tensor:
        """``scales``: [full, 1/2, 1/4, 1/8] foreground maps (B, K-1, h, w); returns (B,) scores."""
        x = F.leaky_relu(self.level0(scales[0]), 0.2)
        for inject, level, s in zip(self.inject, self.levels, scales[1:], strict=True):
            if x.shape[-2:] != s.shape[-2:]:
                raise ValueError(f"scale {tuple(s.shape[-2:])} does not match features {tuple(x.shape[-2:])}")
            x = torch.tanh(level(torch.cat([x, torch.sigmoid(inject(s))], dim=1)))
        return self.score(x).mean(dim=(1, 2, 3))


def real_scales(mask: torch.Tensor, classes: int, ignore: int = 255) -> list[torch.Tensor]:
    """One-hot foreground of integer masks (B, H, W) and its bilinear down-scalings to 1/2, 1/4, 1/8.

    Unknown pixels (``ignore``) are all-zero in every channel.
    """
    m = mask.long()
    onehot = F.one_hot(torch.where(m == ignore, 0, m), classes).permute(0, 3, 1, 2).float()
    onehot = onehot * (m != ignore).unsqueeze(1)
    full = onehot[:, 1:]
    return [full] + [F.interpolate(full, scale_factor=1 / 2 ** k, mode="bilinear", align_corners=False)
                     for k in (1, 2, 3)]


def fake_scales(probs: torch.Tensor, gates: list[torch.Tensor]) -> list[torch.Tensor]:
    """Foreground channels of the final softmax and of the gates' segmentations, finest first."""
    return [probs[:, 1:]] + [g[:, 1:] for g in gates[::-1]]
