"""Learning-rate schedules, as factors of ``--lr`` per step (``torch.optim.lr_scheduler.LambdaLR``).

``cyclic`` (default, MAAG): the authors' triangular cycle (Smith 2017, ``mode='triangular'``) on the
epoch counter: between a lower bound of lr / 10 and an upper bound of lr, half-period
``lr_half_period`` epochs (20), then divided by 1 + 1e-4 x epoch. The epoch is the integer number of
scribble epochs done, so the rate changes once per epoch, as in their code. Their lower bound is
written ``1e-4 // 10``, which is 0; lr / 10 (1e-5) is the intended value and the one used here.
``constant``: lr throughout. ``cosine``: lr x (1 + cos(pi t / T)) / 2 over the run.
"""

from __future__ import annotations

import math
from collections.abc import Callable

SCHEDULES = ("cyclic", "constant", "cosine")
LOWER = 0.1  # the cycle's lower bound as a fraction of the upper one (1e-5 / 1e-4)
DECAY = 1e-4  # per-epoch decay of the authors' define_optimizers: lr / (1 + DECAY x epoch)


def cyclic(epoch: int, half_period: int) -> float:
    """The factor of the upper bound at an integer epoch: triangular cycle, then the 1/(1 + 1e-4 e) decay."""
    cycle = math.floor(1 + epoch / (2 * half_period))
    x = abs(epoch / half_period - 2 * cycle + 1)
    return (LOWER + (1 - LOWER) * max(0.0, 1 - x)) / (1 + DECAY * epoch)


def lr_factor(name: str, max_steps: int, steps_per_epoch: int, half_period: int = 20) -> Callable[[int], float]:
    """The LambdaLR function of ``name``: step (optimiser steps done) -> factor of --lr."""
    if name == "cyclic":
        per = max(1, steps_per_epoch)
        return lambda s: cyclic(s // per, half_period)
    if name == "cosine":
        return lambda s: 0.5 * (1 + math.cos(math.pi * min(s, max_steps) / max_steps))
    if name == "constant":
        return lambda s: 1.0
    raise ValueError(f"unknown learning-rate schedule {name!r}; known: {', '.join(SCHEDULES)}")
