"""The networks of a run and their optimisers: the segmentor (``--network``, with an auxiliary decoder
where the method has one), MAAG's discriminator, a mean teacher, Adam and the learning-rate schedule;
``--compile`` wrappers; the teacher's exponential moving average.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from train.discriminator import MultiScaleDiscriminator
from train.model import AttentionUNet, build_network
from train.schedule import lr_factor

if TYPE_CHECKING:
    from train.config import TrainConfig
    from train.methods import Method


@dataclass
class Nets:
    """The networks and their optimisers. ``model`` and ``disc`` are what a training step calls (DDP
    under torchrun, compiled with --compile); ``raw_*`` are the modules themselves, whose state dicts
    the checkpoints hold and which validation runs; ``disc_g`` is the discriminator as the segmentor's
    step calls it (never DDP: its weights take no gradient there; compiled with --compile);
    ``teacher`` the mean teacher (an EMA of ``raw_model``, no gradients) of methods that keep one."""

    model: Callable[..., Any]
    disc: Callable[..., Any] | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None
    sched_g: torch.optim.lr_scheduler.LambdaLR
    sched_d: torch.optim.lr_scheduler.LambdaLR | None
    raw_model: AttentionUNet = field(repr=False, default=None)  # type: ignore[assignment]
    raw_disc: torch.nn.Module | None = field(repr=False, default=None)
    disc_g: Callable[..., Any] | None = field(repr=False, default=None)
    teacher: AttentionUNet | None = field(repr=False, default=None)

    @torch.no_grad()
    def update_teacher(self, decay: float, step: int) -> None:
        """teacher = a teacher + (1 - a) student, a = min(1 - 1 / (step + 1), decay): the true average
        of the students so far until the exponential one is the better estimate (Tarvainen and
        Valpola 2017; WSL4MIS's update_ema_variables). ``step``: optimiser steps done before this one.
        Parameters only: the teacher's batch-norm statistics are its own (it runs in train mode)."""
        a = min(1.0 - 1.0 / (step + 1), decay)
        for t, s in zip(self.teacher.parameters(), self.raw_model.parameters(), strict=True):
            t.mul_(a).add_(s.detach(), alpha=1.0 - a)


class Compiled:
    """``torch.compile`` (inductor, static shapes: every training batch has the same) of several
    modules' forwards, with one fallback: the first compile error (no C compiler, an op inductor
    cannot lower, ...) is logged once and every wrapped module runs eager from then on, starting with
    the call that failed. The backward graph is compiled with the forward (not lazily at the first
    ``backward()``), so its errors surface here too, before any weight has changed. The wrappers are
    not modules: state dicts, DDP and validation keep using the modules themselves."""

    def __init__(self, log: Callable[[str], None]):
        self.log, self.failed = log, False

    def wrap(self, module: Callable[..., Any]) -> Callable[..., Any]:
        import torch._dynamo.exc
        import torch._functorch.config

        compiled = torch.compile(module, dynamic=False)

        def forward(*args: Any, **kwargs: Any) -> Any:
            if not self.failed:
                try:
                    with torch._functorch.config.patch(force_non_lazy_backward_lowering=True):
                        return compiled(*args, **kwargs)
                except torch._dynamo.exc.TorchDynamoException as e:
                    self.failed = True
                    reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
                    self.log(f"--compile: torch.compile failed ({type(e).__name__}: {reason}); training "
                             "continues eager")
            return module(*args, **kwargs)

        return forward


def _adam(params, lr: float) -> torch.optim.Adam:
    """Fused Adam (one kernel for all parameters) where this torch has it for the device."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # pragma: no cover - older torch / unsupported device
        return torch.optim.Adam(params, lr=lr)


def model_config(cfg: TrainConfig, method: Method, channels: int, classes: int) -> dict[str, Any]:
    """The segmentor's description, as checkpoints record it (``train.model.build_network`` reads it)."""
    return {"network": cfg.network, "in_channels": channels, "classes": classes, "width": cfg.width,
            "aux_decoder": method.aux_decoder}


def build_nets(cfg: TrainConfig, method: Method, channels: int, classes: int, image_size: tuple[int, int],
               device: torch.device, steps_per_epoch: int, channels_last: bool) -> Nets:
    model = build_network(model_config(cfg, method, channels, classes)).to(device)
    opts = cfg.method_options()
    # the discriminator follows --width too (32: MAAG's 32/128/256/512 filters), so narrow runs stay cheap
    disc = (MultiScaleDiscriminator(classes - 1, image_size, width=cfg.width, instance_noise=opts.instance_noise)
            .to(device) if method.discriminator else None)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        disc = disc.to(memory_format=torch.channels_last) if disc is not None else None
    teacher = None
    if method.teacher:  # starts as the student (the EMA's first update then takes the student whole)
        teacher = copy.deepcopy(model)
        for p in teacher.parameters():
            p.requires_grad_(False)
    factor = lr_factor(cfg.lr_schedule, cfg.max_steps, steps_per_epoch, cfg.lr_half_period)
    opt_g = _adam(model.parameters(), cfg.lr)
    opt_d = _adam(disc.parameters(), cfg.lr) if disc is not None else None
    sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, factor)
    sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, factor) if opt_d is not None else None
    return Nets(model, disc, opt_g, opt_d, sched_g, sched_d, model, disc, disc, teacher)
