"""``ustm``: partial CE + the uncertainty-aware, transformation-consistent mean teacher (Liu et al. 2022,
"Weakly-supervised medical image segmentation with uncertainty-aware self-ensembling and
transformation-consistent mean teacher"; the step of WSL4MIS's train_weakly_supervised_ustm_2D.py).

Each iteration: the student's partial CE on the scribbles; the teacher (an exponential moving average
of the student) sees the same images rotated by a random multiple of 90 degrees, plus noise; the
student's softmax, rotated the same way, is pulled towards the teacher's (squared error) where the
teacher is certain: the entropy of its mean softmax over ``ustm_passes`` noisy passes below a
threshold that rises from 0.75 to 1 x log K. The consistency weight and the threshold follow a
sigmoid ramp-up over the run. After the optimiser step the teacher takes the EMA of the student.

Departure: WSL4MIS's threshold is (0.75 .. 1) x log 2, the two-class maximum entropy left from the
binary UA-MT it grew from; log K (PyMIC's) is used here, so the threshold means the same fraction of
the maximum uncertainty for our four classes.
"""

from __future__ import annotations

import math

import torch

from train.methods.context import StepContext

Batch = dict[str, dict[str, torch.Tensor]]


def _noisy(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return x + (torch.randn_like(x) * sigma).clamp(-2 * sigma, 2 * sigma)


@torch.no_grad()
def teacher_uncertainty(teacher: torch.nn.Module, x: torch.Tensor, passes: int, sigma: float) -> torch.Tensor:
    """Entropy (B, 1, H, W) of the teacher's mean softmax over ``passes`` noisy copies of ``x``, run two
    batches at a time as the authors do."""
    pair = torch.cat([x, x])
    total = None
    for _ in range(passes // 2):
        p = torch.softmax(teacher(_noisy(pair, sigma)).logits.float(), dim=1)
        p = p.view(2, *x.shape[:1], *p.shape[1:]).sum(dim=0)
        total = p if total is None else total + p
    mean = total / (2 * (passes // 2))
    return -(mean * torch.log(mean + 1e-6)).sum(dim=1, keepdim=True)


def step(ctx: StepContext, batch: Batch) -> dict[str, torch.Tensor]:
    o, n = ctx.opts, ctx.nets
    s = batch["scribble"]
    x, y = ctx.augment(s["images"], s["scribbles"])
    with ctx.autocast():
        out = n.model(x)
    ce = ctx.scribble_ce(out.logits, y, s["label_state"])
    turns = int(torch.randint(4, (1,)))  # the CPU generator: no device sync, and in every checkpoint
    xr = torch.rot90(x, turns, (2, 3))
    with torch.no_grad(), ctx.autocast():
        target = torch.softmax(n.teacher(_noisy(xr, o.ustm_noise)).logits.float(), dim=1)
        uncertainty = teacher_uncertainty(n.teacher, xr, o.ustm_passes, o.ustm_noise)
    ramp = ctx.ramp(o.ustm_rampup)
    threshold = (0.75 + 0.25 * ramp) * math.log(ctx.num_classes)
    certain = (uncertainty < threshold).float()
    student = torch.rot90(torch.softmax(out.logits.float(), dim=1), turns, (2, 3))
    consistency = (certain * (student - target) ** 2).sum() / (2 * certain.sum() + 1e-16)
    losses = ctx.step_g(ce + o.ustm_weight * ramp * consistency,
                        {"loss/ce": ce, "loss/consistency": consistency, "loss/certain": certain.mean()})
    n.update_teacher(o.ustm_ema_decay, ctx.step)
    return losses
