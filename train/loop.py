"""The training loop for any method of ``train.methods``, single process or DDP.

    train run --store acdc.h5 --out runs/maag                       # one device
    torchrun --nproc-per-node 4 -m train run --store acdc.h5 --out runs/maag   # DDP, rank 0 writes

The method (``train.methods``) says which streams it reads and does one iteration; the loop owns
the rest: batches (resident on the device, or streamed by loader workers), optimisers and the
learning-rate schedule, logging, validation, checkpoints, the NaN check and the time budget.
No step waits for the device: logged losses are summed on the device and read at log time, and
that read is also the NaN check (a non-finite loss stops the run there, before any checkpoint or
validation, so ``last.pt`` stays the last good one).
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from datakit.errors import DatakitError
from datakit.progress import progress_bar
from datakit.store import Store
from train import checkpoint as ckpt
from train import methods
from train.config import TrainConfig, to_toml
from train.data import MultiStreamSampler, ResidentData, make_loader, resident_bytes
from train.discriminator import MultiScaleDiscriminator
from train.inference import ResidentSplit, autocast, use_bf16
from train.model import AttentionUNet
from train.plan import store_plan
from train.schedule import lr_factor

MEMORY_LIMIT = 0.4  # --data auto keeps the data resident when it takes under this share of the device's memory


@dataclass
class Dist:
    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Dist:
        return cls(int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0)),
                   int(os.environ.get("LOCAL_RANK", 0)))


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise DatakitError("--device cuda, but CUDA is not available on this machine")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def check_run_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to mix runs: a non-empty RUN_DIR needs --resume or --overwrite."""
    if resume:
        if not (out / "checkpoints" / "last.pt").is_file():
            raise DatakitError("--resume: no checkpoints/last.pt to resume from", out)
        return
    if out.exists() and not out.is_dir():
        raise DatakitError("exists and is not a directory", out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DatakitError("run directory is not empty; pass --overwrite to replace it or --resume to continue",
                           out)


@dataclass
class Nets:
    """The networks and their optimisers. ``model`` and ``disc`` are what a training step calls (DDP
    under torchrun, compiled with --compile); ``raw_*`` are the modules themselves, whose state dicts
    the checkpoints hold and which validation runs; ``disc_g`` is the discriminator as the segmentor's
    step calls it (never DDP: its weights take no gradient there; compiled with --compile)."""

    model: Callable[..., Any]
    disc: Callable[..., Any] | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None
    sched_g: torch.optim.lr_scheduler.LambdaLR
    sched_d: torch.optim.lr_scheduler.LambdaLR | None
    raw_model: AttentionUNet = field(repr=False, default=None)  # type: ignore[assignment]
    raw_disc: torch.nn.Module | None = field(repr=False, default=None)
    disc_g: Callable[..., Any] | None = field(repr=False, default=None)


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


def build_nets(cfg: TrainConfig, channels: int, classes: int, image_size: tuple[int, int], device: torch.device,
               steps_per_epoch: int, channels_last: bool) -> Nets:
    method = methods.get(cfg.method)
    model = AttentionUNet(channels, classes, cfg.width).to(device)
    # the discriminator follows --width too (32: MAAG's 32/128/256/512 filters), so narrow runs stay cheap
    disc = (MultiScaleDiscriminator(classes - 1, image_size, width=cfg.width, instance_noise=cfg.instance_noise)
            .to(device) if method.discriminator else None)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        disc = disc.to(memory_format=torch.channels_last) if disc is not None else None
    factor = lr_factor(cfg.lr_schedule, cfg.max_steps, steps_per_epoch, cfg.lr_half_period)
    opt_g = _adam(model.parameters(), cfg.lr)
    opt_d = _adam(disc.parameters(), cfg.lr) if disc is not None else None
    sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, factor)
    sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, factor) if opt_d is not None else None
    return Nets(model, disc, opt_g, opt_d, sched_g, sched_d, model, disc, disc)


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False, log=print):
        self.cfg, self.log, self.d = cfg, log, Dist.from_env()
        self.method = methods.get(cfg.method)
        self.device = pick_device(cfg.device, self.d.local_rank)
        self.bf16 = use_bf16(self.device, cfg.precision)
        self.channels_last = self.device.type == "cuda" or self.bf16
        self.store = Store(cfg.store)
        h, w = self.store.image_size
        if h % 16 or w % 16:  # four 2x2 poolings in the UNet (and three stride-2 levels in the discriminator)
            raise DatakitError(f"image size {h} x {w} is not a multiple of 16, which the UNet's four poolings need; "
                               "convert with --size a multiple of 16 (e.g. 224)", self.store.path)
        self.classes = self.store.classes
        self.num_classes = len(self.classes)
        self.streams = methods.resolve_streams(self.store, self.method)
        self.valid = self._valid_indices()
        self.step, self.best, self.best_step = 0, -1.0, 0
        self.sampler_state: dict[str, list[int]] | None = None
        self.run_dir = cfg.out
        self.ckpt_dir = cfg.out / "checkpoints"
        torch.manual_seed(cfg.seed + self.d.rank)
        first = next(iter(self.method.streams))
        self.epoch_steps = max(1, MultiStreamSampler({first: self.streams.indices[first]}, cfg.batch_size, cfg.seed,
                                                     self.d.rank, self.d.world).epoch_batches(first))
        self.nets = build_nets(cfg, self.store.channels, self.num_classes, tuple(self.store.image_size), self.device,
                               self.epoch_steps, self.channels_last)
        self.resume_ck = ckpt.load(self.ckpt_dir / "last.pt") if resume else None

    def _valid_indices(self) -> np.ndarray | None:
        name = self.cfg.valid_split
        if not name:
            return None
        if name not in self.store.splits:
            self.log(f"warning: the store has no split {name!r}: no validation, best.pt is not written")
            return None
        return self.store.splits[name]

    # -- networks and state -----------------------------------------------------------------------
    def prepare_nets(self) -> None:
        """Ready the networks for training steps: DDP under torchrun, train mode, --compile."""
        n = self.nets
        if self.d.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            n.model = DDP(n.raw_model, device_ids=ids)
            if n.raw_disc is not None:
                n.disc = DDP(n.raw_disc, device_ids=ids)
        n.raw_model.train()
        if n.raw_disc is not None:
            n.raw_disc.train()
        n.disc_g = n.raw_disc
        if self.cfg.compile:
            c = Compiled(self.log if self.d.main else lambda m: None)
            n.model = c.wrap(n.model)
            if n.raw_disc is not None:
                n.disc = c.wrap(n.disc)
                n.disc_g = n.disc if self.d.world == 1 else c.wrap(n.raw_disc)  # DDP(D) is not D

    def _restore(self, ck: dict[str, Any]) -> None:
        n = self.nets
        n.raw_model.load_state_dict(ck["model"])
        n.opt_g.load_state_dict(ck["opt_g"])
        n.sched_g.load_state_dict(ck["sched_g"])
        if n.raw_disc is not None:
            n.raw_disc.load_state_dict(ck["disc"])
            n.opt_d.load_state_dict(ck["opt_d"])
            n.sched_d.load_state_dict(ck["sched_d"])
        self.step, self.best, self.best_step = int(ck["step"]), float(ck["best_dice"]), int(ck["best_step"])
        self.sampler_state = {k: [int(x) for x in v] for k, v in ck["sampler"].items()}
        rngs = ck["rng"]
        ckpt.set_rng_state(rngs[self.d.rank] if self.d.rank < len(rngs) and len(rngs) == self.d.world
                           else {"torch": torch.manual_seed(self.cfg.seed + self.d.rank + self.step).get_state()})

    def _payload(self, rngs: list[dict[str, Any]]) -> dict[str, Any]:
        n = self.nets
        return {
            "step": self.step, "method": self.cfg.method, "classes": self.classes,
            "model_config": n.raw_model.config, "model": n.raw_model.state_dict(),
            "disc": n.raw_disc.state_dict() if n.raw_disc is not None else None,
            "opt_g": n.opt_g.state_dict(), "opt_d": n.opt_d.state_dict() if n.opt_d else None,
            "sched_g": n.sched_g.state_dict(), "sched_d": n.sched_d.state_dict() if n.sched_d else None,
            "best_dice": self.best, "best_step": self.best_step, "sampler": self.sampler_state or {},
            "rng": rngs, "config": json.loads(self.cfg.model_dump_json()),
            "image_size": list(self.store.image_size), "plan": store_plan(self.store),
        }

    def _gather_rng(self) -> list[dict[str, Any]]:
        mine = ckpt.rng_state()
        if self.d.world == 1:
            return [mine]
        cpu_only = {"torch": mine["torch"]} | ({"cuda": [t.cpu() for t in mine["cuda"]]} if "cuda" in mine else {})
        gathered: list[Any] = [None] * self.d.world
        dist.all_gather_object(gathered, cpu_only)
        return gathered

    def save(self, name: str = "last.pt") -> None:
        rngs = self._gather_rng()  # every rank takes part; rank 0 writes
        if self.d.main:
            ckpt.save(self.ckpt_dir / name, self._payload(rngs))

    # -- what a method's step uses ----------------------------------------------------------------
    def autocast(self):
        return autocast(self.device, self.bf16)

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
        n = self.nets
        n.opt_g.zero_grad(set_to_none=True)
        total.backward()
        n.opt_g.step()
        n.sched_g.step()
        return {"loss/total": total.detach(), **{k: v.detach() for k, v in parts.items()}}

    # -- data -------------------------------------------------------------------------------------
    @functools.cached_property
    def resident(self) -> bool:
        """--data auto: resident when the streams' samples take under MEMORY_LIMIT of the device's memory."""
        if self.cfg.data != "auto":
            return self.cfg.data == "memory"
        need = resident_bytes(self.store, self.streams, self.method.streams)
        if self.device.type == "cuda":
            have = torch.cuda.get_device_properties(self.device).total_memory
        else:
            have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return need < MEMORY_LIMIT * have

    def batches(self) -> Iterator[tuple[dict[str, dict[str, torch.Tensor]], dict[str, list[int]]]]:
        """Endless (batch on the device, sampler state after it) pairs, images in channels_last where used."""
        cfg, kinds = self.cfg, self.method.streams
        if self.resident:
            data = ResidentData(self.store, self.streams, kinds, self.device)
            sampler = MultiStreamSampler(self.streams.indices, cfg.batch_size, cfg.seed, self.d.rank, self.d.world,
                                         self.sampler_state)
            for batch, state in data.batches(sampler):
                yield self._layout(batch), state
            return
        loader, _ = make_loader(cfg.store, self.streams, kinds, cfg.batch_size, cfg.seed, cfg.workers,
                                self.d.rank, self.d.world, self.sampler_state, pin_memory=self.device.type == "cuda")
        try:
            for b in loader:
                state = b.pop("state")
                moved = {k: {f: t.to(self.device, non_blocking=True) for f, t in v.items()} for k, v in b.items()}
                yield self._layout(moved), state
        finally:
            del loader

    def _layout(self, batch: dict[str, dict[str, torch.Tensor]]) -> dict[str, dict[str, torch.Tensor]]:
        """Images as float32 (float16 stores are cast here), channels_last where the nets use it."""
        for v in batch.values():
            if "images" in v:
                x = v["images"].float()
                v["images"] = x.contiguous(memory_format=torch.channels_last) if self.channels_last else x
        return batch

    # -- validation -------------------------------------------------------------------------------
    def validate(self, split: ResidentSplit | None) -> dict[str, Any] | None:
        if self.valid is None:
            return None
        res = None
        if self.d.main:
            res = split.evaluate(self.nets.raw_model, self.bf16, with_hd=False)
            dice = res["dice"]["mean"] or 0.0
            if dice > self.best:
                self.best, self.best_step = dice, self.step
        if self.d.world > 1:
            box = [self.best, self.best_step]
            dist.broadcast_object_list(box, src=0)
            self.best, self.best_step = box
        if self.best_step == self.step:
            self.save("best.pt")
        return res

    def _check_finite(self, means: dict[str, float], since: int) -> None:
        """The NaN check, at log time: a non-finite mean means a step since ``since`` had a bad loss."""
        bad = [k for k, v in means.items() if not math.isfinite(v)]
        flag = torch.tensor([float(bool(bad))], device=self.device)  # nccl reduces device tensors only
        if self.d.world > 1:
            dist.all_reduce(flag)  # every rank stops together
        if not flag.item():
            return
        kept = self.ckpt_dir / "last.pt"
        where = f"the last good checkpoint {kept} is kept" if kept.is_file() else "no checkpoint was written yet"
        name = bad[0] if bad else "a loss on another rank"
        value = means.get(name, float("nan"))
        at = f"step {self.step}" if since + 1 == self.step else f"steps {since + 1}-{self.step}"
        raise DatakitError(f"{name} is {value} at {at}: training stopped, {where}; lower --lr or check the "
                           "store's images for extreme values", self.run_dir)

    # -- the run ----------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg, n = self.cfg, self.nets
        if self.resume_ck is not None:
            self._restore(self.resume_ck)
            self.resume_ck = None
        self.prepare_nets()
        if self.d.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.toml").write_text(to_toml(cfg))
            _truncate_metrics(self.run_dir / "metrics.jsonl", self.step)
            self.log(f"train {cfg.method}: {self.streams.how}; device {self.device}, world {self.d.world}, "
                     f"{'bf16' if self.bf16 else 'fp32'}, data {'memory' if self.resident else 'stream'}, "
                     f"{'compiled' if cfg.compile else 'eager'}")
        t0 = time.perf_counter()
        valid = (ResidentSplit(self.store, self.valid, self.device) if self.valid is not None and self.d.main
                 else None)
        every = cfg.eval_every or self.epoch_steps
        start = self.step
        budget = cfg.time_budget * 60 if cfg.time_budget > 0 else math.inf
        # seconds kept free within the budget for the closing validation + save: a tenth of the budget (at
        # most 30 s) until one has been measured, then 1.5 x the longest measured
        reserve = min(30.0, 0.1 * budget)
        metrics = (self.run_dir / "metrics.jsonl").open("a") if self.d.main else None
        tb = _tensorboard(self.run_dir) if (cfg.tensorboard and self.d.main) else None
        sums: dict[str, torch.Tensor] = {}
        t_log, steps_log, since = time.perf_counter(), 0, self.step
        progress = progress_bar(None if cfg.progress and self.d.main else False, transient=False)
        stopped_early = False
        batches = self.batches()
        try:
            with progress:
                task = progress.add_task(cfg.method, total=cfg.max_steps, completed=self.step)
                while self.step < cfg.max_steps:
                    batch, state = next(batches)
                    losses = self.method.step(self, batch)
                    self.step += 1
                    self.sampler_state = state
                    steps_log += 1
                    for k, v in losses.items():  # summed on the device: no sync per step
                        sums[k] = sums[k] + v.float() if k in sums else v.float()
                    progress.update(task, advance=1)
                    out_of_time = time.perf_counter() - t0 + reserve > budget
                    last = self.step == cfg.max_steps or out_of_time
                    evaluating = last or (self.step >= cfg.eval_from * cfg.max_steps and self.step % every == 0)
                    saving = last or self.step % cfg.ckpt_every == 0
                    # the losses are read (and NaN-checked) at log time, and always before validating or
                    # saving: a checkpoint is never written after a bad step
                    if self.step % cfg.log_every == 0 or evaluating or saving:
                        keys = list(sums)
                        values = torch.stack([sums[k] for k in keys]).tolist()  # the one read of the losses
                        means = {k: v / steps_log for k, v in zip(keys, values, strict=True)}
                        self._check_finite(means, since)
                        dt = time.perf_counter() - t_log
                        row = {"step": self.step, **means, "lr": n.opt_g.param_groups[0]["lr"],
                               "samples_per_s": steps_log * cfg.batch_size * self.d.world / max(dt, 1e-9)}
                        _write(metrics, tb, row)
                        progress.update(task, description=f"{cfg.method} loss {means['loss/total']:.4f}")
                        sums, steps_log, since = {}, 0, self.step
                    t_close = time.perf_counter()
                    if evaluating:
                        res = self.validate(valid)
                        if res is not None:
                            _write(metrics, tb, {"step": self.step, "valid/dice_mean": res["dice"]["mean"],
                                                 **{f"valid/dice/{c}": v for c, v in res["dice"].items()
                                                    if c != "mean"}})
                    if saving:
                        self.save("last.pt")
                    if evaluating or saving:
                        reserve = max(reserve, 1.5 * (time.perf_counter() - t_close))
                    t_log = t_log if steps_log else time.perf_counter()  # samples/s: training time only
                    if out_of_time:
                        stopped_early = self.step < cfg.max_steps
                        break
        finally:
            batches.close()
            if metrics is not None:
                metrics.close()
            if tb is not None:
                tb.close()
        wall = time.perf_counter() - t0
        if stopped_early and self.d.main:
            self.log(f"--time-budget {cfg.time_budget:g} min: stopped after step {self.step} of {cfg.max_steps}, "
                     "validated and saved")
        return {"steps": self.step - start, "step": self.step, "wall_s": wall,
                "steps_per_s": (self.step - start) / max(wall, 1e-9), "best_dice": self.best,
                "best_step": self.best_step, "run_dir": str(self.run_dir), "stopped_early": stopped_early}


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop rows logged after the checkpoint: those steps are about to be run again."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in keep))


def _write(metrics, tb, row: dict[str, Any]) -> None:
    if metrics is not None:
        metrics.write(json.dumps(row) + "\n")
        metrics.flush()
    if tb is not None:
        for k, v in row.items():
            if k != "step" and v is not None:
                tb.add_scalar(k, v, row["step"])


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise DatakitError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
    return SummaryWriter(str(run_dir / "tb"))


def train(cfg: TrainConfig, resume: bool = False, log=print) -> dict[str, Any]:
    """Run training (joining the DDP group when launched by torchrun); returns a summary."""
    d = Dist.from_env()
    device = pick_device(cfg.device, d.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # fixed shapes every step: let cuDNN pick its fastest kernels
    if d.world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        return Trainer(cfg, resume, log).run()
    finally:
        if d.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
