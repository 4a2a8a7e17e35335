"""The segmentor: a UNet with attention gates, as in the authors' code (MAAG.md; Valvano et al. 2021).

Encoder 4 x ([3x3 conv, BN, ReLU] x 2, 2x2 max-pool) at widths w, 2w, 4w, 8w (w = 32); a 16w
bottleneck of two 1x1 convs. Each of the FOUR decoder blocks (8w, 4w, 2w, w; 1/8, 1/4, 1/2 and full
resolution), in the authors' order: nearest x2 upsampling, 3x3 conv + BN (no activation);
concatenation with the skip; conv2 = [3x3 conv, BN, ReLU]; conv3 = [3x3 conv, BN, ReLU]; the
attention gate: a 1x1 conv of conv2 to K classes + softmax is that scale's segmentation, and its
foreground probability (sum of the non-background channels) multiplies conv3. The segmentations of
the first three blocks (1/8, 1/4, 1/2) are the multi-scale outputs the discriminator sees; the
full-resolution block's gate only gates. A 1x1 conv to K classes gives the logits.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F


def conv_bn_relu(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class EncoderBlock(nn.Module):
    """Two [3x3 conv, BN, ReLU]; returns the skip (before pooling) and the pooled map."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.convs = nn.Sequential(conv_bn_relu(cin, cout), conv_bn_relu(cout, cout))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.convs(x)
        return skip, F.max_pool2d(skip, 2)


class AttentionGate(nn.Module):
    """1x1 conv to K classes + softmax: the block's segmentation; its foreground sum is the gate."""

    def __init__(self, channels: int, classes: int):
        super().__init__()
        self.to_classes = nn.Conv2d(channels, classes, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(gate (B, 1, H, W) in x's dtype, segmentation (B, K, H, W) float32)."""
        seg = torch.softmax(self.to_classes(x).float(), dim=1)
        return seg[:, 1:].sum(dim=1, keepdim=True).to(x.dtype), seg


class DecoderBlock(nn.Module):
    def __init__(self, cin: int, skip: int, cout: int, classes: int):
        super().__init__()
        self.up_conv = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))
        self.conv2 = conv_bn_relu(cout + skip, cout)
        self.conv3 = conv_bn_relu(cout, cout)
        self.gate = AttentionGate(cout, classes)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(gated output, this scale's softmax segmentation)."""
        x = self.up_conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        c2 = self.conv2(torch.cat([x, skip], dim=1))
        gate, seg = self.gate(c2)  # from conv2, as the authors: the gate sees the block's first features
        return self.conv3(c2) * gate, seg


class SegOutput(NamedTuple):
    logits: torch.Tensor  # (B, K, H, W)
    gates: list[torch.Tensor]  # the four blocks' softmax segmentations, 1/8, 1/4, 1/2, full: coarse first

    @property
    def multiscale(self) -> list[torch.Tensor]:
        """The segmentations the discriminator sees besides the final one: 1/2, 1/4, 1/8 (fine first)."""
        return self.gates[:3][::-1]


class AttentionUNet(nn.Module):
    def __init__(self, in_channels: int = 1, classes: int = 4, width: int = 32):
        super().__init__()
        w = [width, 2 * width, 4 * width, 8 * width]
        self.config = {"in_channels": in_channels, "classes": classes, "width": width}
        self.encoder = nn.ModuleList([EncoderBlock(c, o) for c, o in zip([in_channels, *w[:3]], w, strict=True)])
        self.bottleneck = nn.Sequential(conv_bn_relu(w[3], 16 * width, 1), conv_bn_relu(16 * width, 16 * width, 1))
        ins = [16 * width, *w[::-1][:3]]
        self.decoder = nn.ModuleList([
            DecoderBlock(cin, skip, cout, classes) for cin, skip, cout in zip(ins, w[::-1], w[::-1], strict=True)
        ])
        self.head = nn.Conv2d(width, classes, 1)
        he_init(self)

    def forward(self, x: torch.Tensor) -> SegOutput:
        if x.shape[-1] % 16 or x.shape[-2] % 16:
            raise ValueError(f"image size {tuple(x.shape[-2:])} must be a multiple of 16 (four 2x2 poolings)")
        skips = []
        for block in self.encoder:
            skip, x = block(x)
            skips.append(skip)
        x = self.bottleneck(x)
        gates = []
        for block, skip in zip(self.decoder, skips[::-1], strict=True):
            x, seg = block(x, skip)
            gates.append(seg)
        return SegOutput(self.head(x), gates)


def he_init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
