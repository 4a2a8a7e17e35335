"""Multi-scale discriminator of MAAG, as in the authors' code (`multi_res_discriminator.py`, docs/maag.md).

Inputs are foreground maps only (K - 1 channels) at full, 1/2, 1/4 and 1/8 resolution: the final
softmax and the gates' segmentations (fake), or a one-hot mask and its bilinear down-scalings (real).

- Level 0: instance noise on the full-resolution input only (Gaussian, training only), a 4x4 conv,
  stride 2, ``width`` filters, LeakyReLU(0.2).
- Levels 1, 2, 3: squeeze the current features to 13 channels (1x1 conv + sigmoid), concatenate
  the RAW input map of that scale, a spectral-normed 4x4 conv (4, 8, 16 x width filters; strides
  2, 2, 1; TF 'same' padding), tanh. Each spectral-normed conv sees 13 + (K - 1) channels, so the
  coarse scales are not drowned by the features.
- Output: one dense layer over the whole final (H/8, W/8, 16 width) map (Glorot init, no spectral
  norm), linear: one LSGAN score per image, every position with its own weights, so the score
  depends on where a shape is, not only on what it looks like.

The dense layer ties the discriminator to one image size (the store's): it is built for it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

SQUEEZE = 13  # channels the features are squeezed to before each scale's input joins them


def _same_pad(stride: int) -> nn.ZeroPad2d:
    """TensorFlow's 'same' padding of a 4x4 kernel on an even size: (1, 1) at stride 2, (1, 2) at 1."""
    return nn.ZeroPad2d((1, 1, 1, 1) if stride == 2 else (1, 2, 1, 2))


class MultiScaleDiscriminator(nn.Module):
    def __init__(self, channels: int, image_size: tuple[int, int], width: int = 32, instance_noise: float = 0.2):
        super().__init__()
        h, w = (int(v) for v in image_size)
        if h % 8 or w % 8:
            raise ValueError(f"image size {(h, w)} must be a multiple of 8 (three stride-2 levels)")
        self.image_size, self.instance_noise = (h, w), float(instance_noise)
        self.level0 = nn.Conv2d(channels, width, 4, stride=2, padding=1)
        nn.init.kaiming_normal_(self.level0.weight, a=0.0, nonlinearity="relu")  # the authors' He init
        nn.init.zeros_(self.level0.bias)
        filters, strides = (4 * width, 8 * width, 16 * width), (2, 2, 1)
        feats = (width, *filters[:2])
        self.squeeze = nn.ModuleList([nn.Conv2d(c, SQUEEZE, 1) for c in feats])
        self.levels = nn.ModuleList([
            nn.Sequential(_same_pad(s), spectral_norm(nn.Conv2d(SQUEEZE + channels, f, 4, stride=s)))
            for f, s in zip(filters, strides, strict=True)
        ])
        self.dense = nn.Linear(filters[2] * (h // 8) * (w // 8), 1)
        for m in [*self.squeeze, self.dense]:  # TF's default (Glorot uniform, zero bias)
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, scales: list[torch.Tensor]) -> torch.Tensor:
        """``scales``: [full, 1/2, 1/4, 1/8] foreground maps (B, K-1, h, w); returns (B,) scores."""
        full = scales[0]
        if tuple(full.shape[-2:]) != self.image_size:
            raise ValueError(f"discriminator built for {self.image_size} images, got {tuple(full.shape[-2:])}")
        if self.training and self.instance_noise > 0:
            full = full + torch.randn_like(full) * self.instance_noise
        x = F.leaky_relu(self.level0(full), 0.2)
        for squeeze, level, s in zip(self.squeeze, self.levels, scales[1:], strict=True):
            if x.shape[-2:] != s.shape[-2:]:
                raise ValueError(f"scale {tuple(s.shape[-2:])} does not match features {tuple(x.shape[-2:])}")
            x = torch.tanh(level(torch.cat([torch.sigmoid(squeeze(x)), s.to(x.dtype)], dim=1)))
        return self.dense(x.flatten(1)).squeeze(1)


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


def fake_scales(probs: torch.Tensor, multiscale: list[torch.Tensor]) -> list[torch.Tensor]:
    """Foreground channels of the final softmax and of the gate segmentations at 1/2, 1/4, 1/8."""
    return [probs[:, 1:]] + [g[:, 1:] for g in multiscale]
