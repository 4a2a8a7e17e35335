"""The training loop: maag | pce | full, single process or DDP.

    train run --store acdc.h5 --out runs/maag                       # one device
    torchrun --nproc-per-node 4 -m train run --store acdc.h5 --out runs/maag   # DDP, rank 0 writes

Each maag iteration: one batch of each stream (scribble, unlabelled, unpaired masks), augmented on
the device; one segmentor forward on scribble + unlabelled images together; the discriminator step
first (real: unpaired masks, fake: detached predictions on the unlabelled images, all four scales),
then the segmentor step (weighted partial CE on scribbles + LSGAN generator term, dynamically
weighted). pce: the partial CE alone; full: plain CE on full masks of the same patients.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from datakit.errors import DatakitError
from datakit.store import Store
from train import checkpoint as ckpt
from train.augment import augment_masks, augment_pair
from train.config import TrainConfig, to_toml
from train.data import make_loader, resolve_streams
from train.discriminator import MultiScaleDiscriminator, fake_scales, real_scales
from train.inference import autocast, evaluate
from train.losses import dynamic_weighting, lsgan_d, lsgan_g, partial_ce
from train.model import AttentionUNet

KINDS = {"maag": {"scribble": "scribble", "unlabelled": "unlabelled", "masks": "masks"},
         "pce": {"scribble": "scribble"}, "full": {"full": "full"}}


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


def _lr_lambda(cfg: TrainConfig):
    if cfg.lr_schedule == "cosine":
        return lambda s: 0.5 * (1 + math.cos(math.pi * min(s, cfg.max_steps) / cfg.max_steps))
    return lambda s: 1.0


@dataclass
class Nets:
    model: torch.nn.Module
    disc: torch.nn.Module | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None
    sched_g: torch.optim.lr_scheduler.LambdaLR
    sched_d: torch.optim.lr_scheduler.LambdaLR | None
    raw_model: AttentionUNet = field(repr=False, default=None)  # type: ignore[assignment]
    raw_disc: torch.nn.Module | None = field(repr=False, default=None)


def build_nets(cfg: TrainConfig, channels: int, classes: int, device: torch.device) -> Nets:
    model = AttentionUNet(channels, classes, cfg.width).to(device)
    # the discriminator follows --width too (32: MAAG's 128/256/512 filters), so narrow runs stay cheap
    disc = MultiScaleDiscriminator(classes - 1, width=cfg.width).to(device) if cfg.method == "maag" else None
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt_g = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr) if disc is not None else None
    sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, _lr_lambda(cfg))
    sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, _lr_lambda(cfg)) if opt_d is not None else None
    return Nets(model, disc, opt_g, opt_d, sched_g, sched_d, model, disc)


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False, log=print):
        self.cfg, self.log, self.d = cfg, log, Dist.from_env()
        self.device = pick_device(cfg.device, self.d.local_rank)
        self.store = Store(cfg.store)
        self.classes = self.store.classes
        self.streams = resolve_streams(self.store, cfg.method)
        self.valid = self._valid_indices()
        self.step, self.best, self.best_step = 0, -1.0, 0
        self.sampler_state: dict[str, list[int]] | None = None
        self.run_dir = cfg.out
        self.ckpt_dir = cfg.out / "checkpoints"
        torch.manual_seed(cfg.seed + self.d.rank)
        self.nets = build_nets(cfg, self.store.channels, len(self.classes), self.device)
        self.resume_ck = ckpt.load(self.ckpt_dir / "last.pt") if resume else None

    def _valid_indices(self) -> np.ndarray | None:
        name = self.cfg.valid_split
        if not name:
            return None
        if name not in self.store.splits:
            self.log(f"warning: the store has no split {name!r}: no validation, best.pt is not written")
            return None
        return self.store.splits[name]

    # -- state ------------------------------------------------------------------------------------
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
            "image_size": list(self.store.image_size),
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

    # -- one iteration ----------------------------------------------------------------------------
    def _to(self, a: torch.Tensor) -> torch.Tensor:
        return a.to(self.device, non_blocking=True)

    def _images(self, x: torch.Tensor) -> torch.Tensor:
        x = self._to(x)
        return x.contiguous(memory_format=torch.channels_last) if self.device.type == "cuda" else x

    def _noisy(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        s = self.cfg.instance_noise
        return [x + torch.randn_like(x) * s for x in xs] if s > 0 else xs

    def train_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        cfg, n = self.cfg, self.nets
        k = len(self.classes)
        if cfg.method == "full":
            x, y = self._images(batch["full"]["images"]), self._to(batch["full"]["masks"])
            ls = self._to(batch["full"]["label_state"])
            if cfg.augment:
                x, (y,) = augment_pair(x, [(y, 255)])
            with autocast(self.device):
                out = n.model(x)
            ce = partial_ce(out.logits, y, weighted=False, label_state=ls)
            return self._step_g(ce, {"loss/ce": ce})
        s = batch["scribble"]
        x, y, ls = self._images(s["images"]), self._to(s["scribbles"]), self._to(s["label_state"])
        if cfg.augment:
            x, (y,) = augment_pair(x, [(y, 255)])
        if cfg.method == "pce":
            with autocast(self.device):
                out = n.model(x)
            ce = partial_ce(out.logits, y, label_state=ls)
            return self._step_g(ce, {"loss/ce": ce})
        xu, m = self._images(batch["unlabelled"]["images"]), self._to(batch["masks"]["masks"])
        if cfg.augment:
            xu, _ = augment_pair(xu, [])
            m = augment_masks(m)
        b = x.shape[0]
        with autocast(self.device):
            out = n.model(torch.cat([x, xu]))
        probs_u = torch.softmax(out.logits[b:].float(), dim=1)
        fake = fake_scales(probs_u, [g[b:] for g in out.gates])
        real = real_scales(m, k)
        # discriminator first (on detached predictions), then the segmentor against the updated D
        with autocast(self.device):
            scores = n.disc([torch.cat([r, f.detach()]) for r, f in zip(self._noisy(real), self._noisy(fake),
                                                                        strict=True)])
        loss_d = lsgan_d(scores[:len(m)], scores[len(m):], cfg.label_flip)
        self._check(loss_d, "loss/disc")
        n.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        n.opt_d.step()
        n.sched_d.step()
        with autocast(self.device):
            g_scores = n.disc(self._noisy(fake))
        g = lsgan_g(g_scores)
        ce = partial_ce(out.logits[:b], y, label_state=ls)
        total, w = dynamic_weighting(ce, g, cfg.adv_weight)
        return self._step_g(total, {"loss/ce": ce, "loss/adv": cfg.adv_weight * g.detach(), "loss/disc": loss_d,
                                    "loss/ce_weight": w})

    def _check(self, loss: torch.Tensor, name: str) -> None:
        bad = torch.isfinite(loss.detach()).logical_not().float().reshape(1)  # stays on the device: one sync below
        if self.d.world > 1:
            dist.all_reduce(bad)  # every rank stops together
        if bad.item():
            kept = self.ckpt_dir / "last.pt"
            where = f"the last good checkpoint {kept} is kept" if kept.is_file() else "no checkpoint was written yet"
            raise DatakitError(f"{name} is {loss.item()} at step {self.step + 1}: training stopped, {where}; "
                               "lower --lr or check the store's images for extreme values", self.run_dir)

    def _step_g(self, total: torch.Tensor, parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self._check(total, "loss/total")
        n = self.nets
        n.opt_g.zero_grad(set_to_none=True)
        total.backward()
        n.opt_g.step()
        n.sched_g.step()
        return {"loss/total": total.detach(), **{k: v.detach() for k, v in parts.items()}}

    # -- validation -------------------------------------------------------------------------------
    def validate(self) -> dict[str, Any] | None:
        if self.valid is None:
            return None
        res = None
        if self.d.main:
            res = evaluate(self.nets.raw_model, self.store, self.valid, self.device, with_hd=False)
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

    # -- the run ----------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg, n = self.cfg, self.nets
        if self.resume_ck is not None:
            self._restore(self.resume_ck)
            self.resume_ck = None
        if self.d.world > 1:
            n.model = DDP(n.raw_model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if n.raw_disc is not None:
                n.disc = DDP(n.raw_disc, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        n.model.train()
        if n.disc is not None:
            n.disc.train()
        if self.d.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.toml").write_text(to_toml(cfg))
            _truncate_metrics(self.run_dir / "metrics.jsonl", self.step)
            self.log(f"train {cfg.method}: {self.streams.how}; device {self.device}, world {self.d.world}")
        loader, sampler = make_loader(cfg.store, self.streams, KINDS[cfg.method], cfg.batch_size,
                                      cfg.seed, cfg.workers, self.d.rank, self.d.world, self.sampler_state,
                                      pin_memory=self.device.type == "cuda")
        first = next(iter(KINDS[cfg.method]))
        every = cfg.eval_every or max(1, sampler.epoch_batches(first))
        start = self.step
        metrics = (self.run_dir / "metrics.jsonl").open("a") if self.d.main else None
        tb = _tensorboard(self.run_dir) if (cfg.tensorboard and self.d.main) else None
        sums: dict[str, float] = {}
        t_log, steps_log = time.perf_counter(), 0
        t0 = time.perf_counter()
        progress = _progress(cfg.progress and self.d.main)
        try:
            with progress:
                task = progress.add_task(cfg.method, total=cfg.max_steps, completed=self.step)
                batches = iter(loader)
                while self.step < cfg.max_steps:
                    batch = next(batches)
                    losses = self.train_step(batch)
                    self.step += 1
                    self.sampler_state = batch["state"]
                    steps_log += 1
                    for k, v in losses.items():
                        sums[k] = sums.get(k, 0.0) + float(v)
                    progress.update(task, advance=1, description=f"{cfg.method} loss {float(losses['loss/total']):.4f}")
                    if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                        dt = time.perf_counter() - t_log
                        row = {"step": self.step, **{k: v / steps_log for k, v in sums.items()},
                               "lr": n.opt_g.param_groups[0]["lr"],
                               "samples_per_s": steps_log * cfg.batch_size * self.d.world / max(dt, 1e-9)}
                        _write(metrics, tb, row)
                        sums, steps_log, t_log = {}, 0, time.perf_counter()
                    if self.step >= cfg.eval_from * cfg.max_steps and (self.step % every == 0
                                                                        or self.step == cfg.max_steps):
                        res = self.validate()
                        if res is not None:
                            _write(metrics, tb, {"step": self.step, "valid/dice_mean": res["dice"]["mean"],
                                                 **{f"valid/dice/{c}": v for c, v in res["dice"].items()
                                                    if c != "mean"}})
                    if self.step % cfg.ckpt_every == 0 or self.step == cfg.max_steps:
                        self.save("last.pt")
        finally:
            if metrics is not None:
                metrics.close()
            if tb is not None:
                tb.close()
            del loader
        wall = time.perf_counter() - t0
        return {"steps": self.step - start, "step": self.step, "wall_s": wall,
                "steps_per_s": (self.step - start) / max(wall, 1e-9), "best_dice": self.best,
                "best_step": self.best_step, "run_dir": str(self.run_dir)}


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


class _NoProgress:
    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *a: object) -> None:
        return None

    def add_task(self, *a: Any, **k: Any) -> int:
        return 0

    def update(self, *a: Any, **k: Any) -> None:
        return None


def _progress(enabled: bool):
    if not enabled:
        return _NoProgress()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    transient=False)


def train(cfg: TrainConfig, resume: bool = False, log=print) -> dict[str, Any]:
    """Run training (joining the DDP group when launched by torchrun); returns a summary."""
    d = Dist.from_env()
    device = pick_device(cfg.device, d.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if d.world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        return Trainer(cfg, resume, log).run()
    finally:
        if d.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
