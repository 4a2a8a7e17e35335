"""What a method's step receives: the networks, the optimiser steps, autocast, the class count, the
config and the method's own options, and where the run is (for ramps). Nothing else of the loop."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from train.inference import autocast
from train.losses import partial_ce

if TYPE_CHECKING:
    from pydantic import BaseModel

    from train.config import TrainConfig
    from train.nets import Nets


def sigmoid_rampup(step: int, length: float) -> float:
    """exp(-5 (1 - t)^2), t = step / length clipped to [0, 1]: the ramp-up of Laine and Aila 2017 (and of
    WSL4MIS / PyMIC's consistency weights). 1 from ``length`` on; 1 when ``length`` <= 0."""
    if length <= 0:
        return 1.0
    t = min(max(step / length, 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)


@dataclass
class StepContext:
    """A step's view of the run.

    Example (pce's step, in full)::

        def step_pce(ctx: StepContext, batch):
            s = batch["scribble"]
            x, y = ctx.augment(s["images"], s["scribbles"])
            with ctx.autocast():
                out = ctx.nets.model(x)
            ce = ctx.scribble_ce(out.logits, y, s["label_state"])
            return ctx.step_g(ce, {"loss/ce": ce})
    """

    cfg: TrainConfig
    opts: BaseModel | None  # the method's options (None for a method without any)
    nets: Nets
    num_classes: int
    device: torch.device
    bf16: bool
    scribble_weighted: bool = True  # the partial CE's class weights (--scribble-weights, or the method's own)
    step: int = 0  # iterations done before the one running

    def scribble_ce(self, logits: torch.Tensor, scribbles: torch.Tensor, label_state: torch.Tensor) -> torch.Tensor:
        """The partial cross-entropy on scribbles, class-weighted or not as the run says."""
        return partial_ce(logits, scribbles, weighted=self.scribble_weighted, label_state=label_state)

    def autocast(self):
        return autocast(self.device, self.bf16)

    def augment(self, x: torch.Tensor, y: torch.Tensor | None = None,
                fill: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The run's augmentation (``--augment``) of images and, sharing each image's warp, their labels
        (``fill`` outside the image: 255 unknown by default)."""
        from datakit.constants import IGNORE
        from train.augment import augment_pair

        if not self.cfg.augment:
            return x, y
        if y is None:
            return augment_pair(x, [])[0], None
        x, (y,) = augment_pair(x, [(y, IGNORE if fill is None else fill)])
        return x, y

    def ramp(self, fraction: float = 1.0) -> float:
        """The sigmoid ramp-up over ``fraction`` of the run (``max_steps``), at this step."""
        return sigmoid_rampup(self.step, fraction * self.cfg.max_steps)

    @contextmanager
    def frozen_disc(self) -> Iterator[None]:
        """The discriminator's weights take no gradient inside (the segmentor's step)."""
        params = list(self.nets.raw_disc.parameters())
        for p in params:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in params:
                p.requires_grad_(True)

    def step_d(self, loss: torch.Tensor) -> None:
        n = self.nets
        n.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        n.opt_d.step()
        n.sched_d.step()

    def step_g(self, total: torch.Tensor, parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Backward ``total`` and step the segmentor's optimiser and schedule; returns the detached
        losses to log (``loss/total`` and ``parts``)."""
        n = self.nets
        n.opt_g.zero_grad(set_to_none=True)
        total.backward()
        n.opt_g.step()
        n.sched_g.step()
        return {"loss/total": total.detach(), **{k: v.detach() if isinstance(v, torch.Tensor) else
                                                 torch.tensor(float(v), device=self.device)
                                                 for k, v in parts.items()}}
