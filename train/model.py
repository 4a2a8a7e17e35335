"""The segmentor: a UNet with attention gates, as in the authors' code (docs/maag.md; Valvano et al. 2021).

Encoder 4 x ([3x3 conv, BN, ReLU] x 2, 2x2 max-pool) at widths w, 2w, 4w, 8w (w = 32); a 16w
bottleneck of two 1x1 convs. Each of the FOUR decoder blocks (8w, 4w, 2w, w; 1/8, 1/4, 1/2 and full
resolution), in the authors' order: nearest x2 upsampling, 3x3 conv + BN (no activation);
concatenation with the skip; conv2 = [3x3 conv, BN, ReLU]; conv3 = [3x3 conv, BN, ReLU]; the
attention gate: a 1x1 conv of conv2 to K classes + softmax is that scale's segmentation, and its
foreground probability (sum of the non-background channels) multiplies conv3. The segmentations of
the first three blocks (1/8, 1/4, 1/2) are the multi-scale outputs the discriminator sees; the
full-resolution block's gate only gates. A 1x1 conv to K classes gives the logits.

Networks are chosen by name (``NETWORKS``, the ``--network`` option) and rebuilt from a checkpoint's
``model_config`` (:func:`build_network`):
- ``attention_unet``: the above (MAAG's segmentor; every method's default);
- ``unet``: the same UNet without the gates (each decoder block outputs conv3), the plain UNet most
  scribble papers use as their backbone.
Either takes ``aux_decoder=True`` for methods with two decoders on one encoder (DMPLS, DMSPS): a
second decoder and head of the same shape, fed the encoder features through ``dropout2d(0.5)``
(the authors' feature perturbation), run only when ``forward(x, aux=True)`` asks for it. Inference
always uses the main decoder.
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
    def __init__(self, cin: int, skip: int, cout: int, classes: int, gate: bool = True):
        super().__init__()
        self.up_conv = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))
        self.conv2 = conv_bn_relu(cout + skip, cout)
        self.conv3 = conv_bn_relu(cout, cout)
        self.gate = AttentionGate(cout, classes) if gate else None

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(output, this scale's softmax segmentation: None without a gate)."""
        x = self.up_conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        c2 = self.conv2(torch.cat([x, skip], dim=1))
        if self.gate is None:
            return self.conv3(c2), None
        gate, seg = self.gate(c2)  # from conv2, as the authors: the gate sees the block's first features
        return self.conv3(c2) * gate, seg


class SegOutput(NamedTuple):
    logits: torch.Tensor  # (B, K, H, W)
    gates: list[torch.Tensor]  # the four blocks' softmax segmentations, 1/8, 1/4, 1/2, full: coarse first
    aux_logits: torch.Tensor | None = None  # the auxiliary decoder's (B, K, H, W), when asked for

    @property
    def multiscale(self) -> list[torch.Tensor]:
        """The segmentations the discriminator sees besides the final one: 1/2, 1/4, 1/8 (fine first)."""
        return self.gates[:3][::-1]


class AttentionUNet(nn.Module):
    """The segmentor. Args: ``in_channels``, ``classes`` (K, background included), ``width`` (first
    level; MAAG: 32), ``gates`` (False: the plain UNet), ``aux_decoder`` (a second decoder).

    Example::

        >>> net = AttentionUNet(in_channels=1, classes=4, width=8)
        >>> out = net(torch.zeros(2, 1, 64, 64))
        >>> tuple(out.logits.shape), [tuple(g.shape[-2:]) for g in out.gates]
        ((2, 4, 64, 64), [(8, 8), (16, 16), (32, 32), (64, 64)])
    """

    def __init__(self, in_channels: int = 1, classes: int = 4, width: int = 32, gates: bool = True,
                 aux_decoder: bool = False):
        super().__init__()
        w = [width, 2 * width, 4 * width, 8 * width]
        self.config = {"network": "attention_unet" if gates else "unet", "in_channels": in_channels,
                       "classes": classes, "width": width, "aux_decoder": aux_decoder}
        self.encoder = nn.ModuleList([EncoderBlock(c, o) for c, o in zip([in_channels, *w[:3]], w, strict=True)])
        self.bottleneck = nn.Sequential(conv_bn_relu(w[3], 16 * width, 1), conv_bn_relu(16 * width, 16 * width, 1))
        ins = [16 * width, *w[::-1][:3]]

        def decoder() -> nn.ModuleList:
            return nn.ModuleList([DecoderBlock(cin, skip, cout, classes, gates)
                                  for cin, skip, cout in zip(ins, w[::-1], w[::-1], strict=True)])

        self.decoder = decoder()
        self.head = nn.Conv2d(width, classes, 1)
        self.aux_decoder = decoder() if aux_decoder else None
        self.aux_head = nn.Conv2d(width, classes, 1) if aux_decoder else None
        he_init(self)

    def forward(self, x: torch.Tensor, aux: bool = False) -> SegOutput:
        if x.shape[-1] % 16 or x.shape[-2] % 16:
            raise ValueError(f"image size {tuple(x.shape[-2:])} must be a multiple of 16 (four 2x2 poolings)")
        skips = []
        for block in self.encoder:
            skip, x = block(x)
            skips.append(skip)
        x = self.bottleneck(x)
        logits, gates = _decode(self.decoder, self.head, x, skips)
        aux_logits = None
        if aux:
            if self.aux_decoder is None:
                raise ValueError("this network has no auxiliary decoder (build it with aux_decoder=True)")
            drop = lambda t: F.dropout2d(t, 0.5, self.training)  # noqa: E731 - the authors' feature perturbation
            aux_logits, _ = _decode(self.aux_decoder, self.aux_head, drop(x), [drop(s) for s in skips])
        return SegOutput(logits, gates, aux_logits)


def _decode(blocks: nn.ModuleList, head: nn.Module, x: torch.Tensor,
            skips: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    gates = []
    for block, skip in zip(blocks, skips[::-1], strict=True):
        x, seg = block(x, skip)
        if seg is not None:
            gates.append(seg)
    return head(x), gates


# name -> (class, fixed constructor arguments); ``--network`` and a checkpoint's model_config["network"]
NETWORKS: dict[str, dict[str, bool]] = {"attention_unet": {"gates": True}, "unet": {"gates": False}}


def network_kwargs(model_config: dict) -> dict:
    """A model_config (as checkpoints hold it) -> AttentionUNet's keyword arguments. Checkpoints that
    predate the registry have no "network" (they are attention_unet) nor "aux_decoder" (False)."""
    cfg = dict(model_config)
    name = cfg.pop("network", "attention_unet")
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; known networks: {', '.join(NETWORKS)}")
    return {**cfg, **NETWORKS[name]}


def build_network(model_config: dict) -> AttentionUNet:
    """The network a model_config describes (see :func:`network_kwargs`)."""
    return AttentionUNet(**network_kwargs(model_config))


def he_init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
