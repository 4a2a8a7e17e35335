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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from datakit.errors import DatakitError
from datakit.progress import progress_bar
from datakit.store import Store
from datakit.store.check import check_label_values
from datakit.store.identity import fingerprint
from train import checkpoint as ckpt
from train import methods
from train.config import TrainConfig, as_written, to_toml
from train.data import MultiStreamSampler, ResidentData, label_indices, make_loader, resident_bytes
from train.inference import ResidentSplit, use_bf16
from train.methods.context import StepContext
from train.nets import Compiled, build_nets
from train.plan import store_plan
from train.rundir import RunDir, check_run_dir

__all__ = ["Dist", "Trainer", "check_run_dir", "pick_device", "train"]

# A resumed run must be the same run: these options (and the store's content, the image size and the
# classes) are its identity. Every other option may change on --resume and takes effect from there,
# recorded in metrics.jsonl with the step.
IDENTITY = ("method", "network", "width", "batch_size", "seed")

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


class Trainer:
    """One training run of ``cfg``: the store opened and checked, the method's streams picked, its
    networks built; :meth:`run` trains. Nothing is written before :meth:`run`.

    Construction checks everything that can fail about the inputs, before any output is touched: the
    method, the device, the store's structure (``Store``), the image size, the method's streams (the
    splits they need, scribbles present, complete masks) and the label values of every sample the
    run reads (its streams' scribbles or masks and the validation masks, within the classes or 255).

    Args: ``cfg`` (the run), ``resume`` (continue RUN_DIR/checkpoints/last.pt), ``log`` (one line per
    message), ``d`` / ``device`` (decided by :func:`train` once), ``overwrite`` (replace an earlier run
    at this one's first checkpoint), ``provenance`` (written to RUN_DIR/provenance.json as it starts).

    Example (two pce steps on the store ``acdc.h5``; the CLI's ``train run`` does the same, locked)::

        >>> from train.config import TrainConfig
        >>> cfg = TrainConfig(store="acdc.h5", out="runs/pce", method="pce", max_steps=2, width=4,
        ...                   batch_size=2, valid_split="", progress=False, device="cpu")
        >>> trainer = Trainer(cfg, log=lambda line: None)
        >>> summary = trainer.run()
        >>> trainer.close()
        >>> summary["step"], sorted(p.name for p in Path("runs/pce").iterdir())
        (2, ['checkpoints', 'config.toml', 'metrics.jsonl'])
    """

    def __init__(self, cfg: TrainConfig, resume: bool = False, log=print, d: Dist | None = None,
                 device: torch.device | None = None, overwrite: bool = False,
                 provenance: dict[str, Any] | None = None):
        self.cfg, self.log, self.provenance = cfg, log, provenance
        self.rundir = RunDir(cfg.out, overwrite and not resume)
        self.d = d if d is not None else Dist.from_env()
        self.method = methods.get(cfg.method)
        self.device = device if device is not None else pick_device(cfg.device, self.d.local_rank)
        self.bf16 = use_bf16(self.device, cfg.precision)
        self.channels_last = self.device.type == "cuda" or self.bf16
        self.store = Store(cfg.store)
        try:
            self._check_store()
        except BaseException:
            self.store.close()
            raise
        self.step, self.best, self.best_step = 0, -1.0, 0
        self.saved_step: int | None = None  # the step of the last checkpoints/last.pt written (or resumed)
        self.sampler_state: dict[str, list[int]] | None = None
        self.changed: dict[str, list[Any]] = {}  # options changed on --resume: name -> [before, now]
        torch.manual_seed(cfg.seed + self.d.rank)
        first = next(iter(self.method.streams))
        self.epoch_steps = max(1, MultiStreamSampler({first: self.streams.indices[first]}, cfg.batch_size, cfg.seed,
                                                     self.d.rank, self.d.world).epoch_batches(first))
        self.nets = build_nets(cfg, self.method, self.store.channels, self.num_classes, tuple(self.store.image_size),
                               self.device, self.epoch_steps, self.channels_last)
        weights = self.method.scribble_weights if cfg.scribble_weights == "auto" else cfg.scribble_weights
        self.ctx = StepContext(cfg, cfg.method_options(), self.nets, self.num_classes, self.device, self.bf16,
                               scribble_weighted=weights == "batch")
        self.step_fn = self.method.step_fn()
        self.resume_ck = None
        if resume:
            self.resume_ck = ckpt.load(self.ckpt_dir / "last.pt")
            self._check_resumable(self.resume_ck)

    @property
    def run_dir(self) -> Path:
        return self.rundir.path

    @property
    def ckpt_dir(self) -> Path:
        return self.rundir.checkpoints

    def _check_resumable(self, ck: dict[str, Any]) -> None:
        """--resume continues the same run or nothing: method, network, width, batch size, seed, the
        store's content, image size and classes must be the checkpoint's (a one-line error naming both
        values otherwise); a weights-only checkpoint cannot be resumed. Other options may change."""
        where = self.ckpt_dir / "last.pt"
        if ck.get("weights_only"):
            raise DatakitError("is a weights-only checkpoint (no optimisers, RNG or data position): it can be "
                               "evaluated, not resumed", where)
        saved = as_written(ck["config"]) if isinstance(ck.get("config"), dict) else {}
        now = self.cfg.model_dump()
        pairs = [(k, saved.get(k, ck.get(k)), now[k]) for k in IDENTITY]
        pairs += [("store content", ck.get("store_fingerprint"), self.store_fingerprint),
                  ("image size", ck.get("image_size"), list(self.store.image_size)),
                  ("classes", ck.get("classes"), self.classes)]
        for key, before, after in pairs:
            if before is not None and before != after and not (key == "network" and before is None):
                raise DatakitError(f"--resume: this run's {key} is {before!r}, now {after!r}: a resumed run must "
                                   "be the same run (start a new one with another --out)", where)
        mine = self.nets.raw_model.config
        theirs = ck.get("model_config") or {}
        for key in ("in_channels", "classes", "width", "aux_decoder"):
            if key in theirs and theirs[key] != mine[key]:
                raise DatakitError(f"--resume: the checkpoint's model has {key} = {theirs[key]!r}, this run's "
                                   f"{mine[key]!r}", where)
        if (ck.get("disc") is not None) != (self.nets.raw_disc is not None) or \
                (ck.get("teacher") is not None) != (self.nets.teacher is not None):
            raise DatakitError(f"--resume: the checkpoint's networks are not those of method {self.cfg.method!r}",
                               where)
        self.changed = {k: [saved[k], now[k]] for k in now if k in saved and saved[k] != now[k]
                        and k not in IDENTITY and k not in ("store", "out", "progress")}  # progress: display only

    def _check_store(self) -> None:
        """The store's image size, the method's streams and the label values the run reads."""
        h, w = self.store.image_size
        if h % 16 or w % 16:  # four 2x2 poolings in the UNet (and three stride-2 levels in the discriminator)
            raise DatakitError(f"image size {h} x {w} is not a multiple of 16, which the UNet's four poolings need; "
                               "convert with --size a multiple of 16 (e.g. 224)", self.store.path)
        self.classes = self.store.classes
        self.num_classes = len(self.classes)
        self.store_fingerprint = fingerprint(self.store)  # what the store holds, wherever it lies
        self.streams = methods.resolve_streams(self.store, self.method)
        self.valid = self._valid_indices()
        for name, idx in label_indices(self.streams, self.method.streams, self.valid).items():
            check_label_values(self.store, (name,), idx)

    def _valid_indices(self) -> np.ndarray | None:
        name = self.cfg.valid_split
        if not name:
            return None
        if name not in self.store.splits:
            self.log(f"warning: the store has no split {name!r}: no validation, best.pt is not written")
            return None
        if not len(self.store.splits[name]):
            self.log(f"warning: split {name!r} holds no samples: no validation, best.pt is not written "
                     "(train eval --run uses last.pt)")
            return None
        return self.store.splits[name]

    def close(self) -> None:
        self.store.close()

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
        if n.teacher is not None:
            n.teacher.load_state_dict(ck["teacher"])
        n.opt_g.load_state_dict(ck["opt_g"])
        n.sched_g.load_state_dict(ck["sched_g"])
        if n.raw_disc is not None:
            n.raw_disc.load_state_dict(ck["disc"])
            n.opt_d.load_state_dict(ck["opt_d"])
            n.sched_d.load_state_dict(ck["sched_d"])
        for opt, sched in ((n.opt_g, n.sched_g), (n.opt_d, n.sched_d)):  # --lr as now given, not as saved
            if opt is not None:
                sched.base_lrs = [self.cfg.lr] * len(opt.param_groups)
                for group, fn in zip(opt.param_groups, sched.lr_lambdas, strict=True):
                    group["initial_lr"] = self.cfg.lr
                    group["lr"] = self.cfg.lr * fn(sched.last_epoch)
        self.step, self.best, self.best_step = int(ck["step"]), float(ck["best_dice"]), int(ck["best_step"])
        self.saved_step = self.step
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
            "teacher": n.teacher.state_dict() if n.teacher is not None else None,
            "opt_g": n.opt_g.state_dict(), "opt_d": n.opt_d.state_dict() if n.opt_d else None,
            "sched_g": n.sched_g.state_dict(), "sched_d": n.sched_d.state_dict() if n.sched_d else None,
            "best_dice": self.best, "best_step": self.best_step, "sampler": self.sampler_state or {},
            "rng": rngs, "config": json.loads(self.cfg.model_dump_json()),
            "image_size": list(self.store.image_size), "store_fingerprint": self.store_fingerprint,
            "plan": store_plan(self.store),
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
        """Write a checkpoint, only if every weight and optimiser state is finite (a NaN or inf there is
        refused and stops the run, keeping the last good one). The first checkpoint of a run that
        replaces an earlier one (--overwrite) swaps it in."""
        rngs = self._gather_rng()  # every rank takes part; rank 0 writes
        payload = self._payload(rngs)
        bad = ckpt.non_finite(payload)  # the same weights on every rank: every rank stops together
        if bad:
            raise DatakitError(f"{bad} is not finite (NaN or inf) at step {self.step} although the logged losses "
                               f"were: training stopped, {self._kept()}; lower --lr", self.run_dir)
        if self.d.main:
            ckpt.save(self.ckpt_dir / name, payload)
            self.rundir.publish()
        if name == "last.pt":
            self.saved_step = self.step

    def _kept(self) -> str:
        """What a stopped run leaves: its last good checkpoint, named with its step."""
        if self.saved_step is None:
            earlier = " (the earlier run in RUN_DIR is kept as it was)" if self.rundir.staging is not None else ""
            return "no checkpoint was written yet" + earlier
        return f"the last good checkpoint {self.ckpt_dir / 'last.pt'} (step {self.saved_step}) is kept"

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
        name = bad[0] if bad else "a loss on another rank"
        value = means.get(name, float("nan"))
        at = f"step {self.step}" if since + 1 == self.step else f"steps {since + 1}-{self.step}"
        raise DatakitError(f"{name} is {value} at {at}: training stopped, {self._kept()}; lower --lr or check the "
                           "store's images for extreme values", self.run_dir)

    # -- the run ----------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train to ``max_steps`` (or the time budget). A run that replaces an earlier one and stops before
        its first checkpoint leaves the earlier one as it was."""
        try:
            return self._run()
        except BaseException:
            if self.d.main:
                self.rundir.abandon()
            raise

    def _start(self) -> None:
        """RUN_DIR's files at the start: config.toml, provenance.json, the metrics kept on resume."""
        cfg = self.cfg
        self.rundir.create()
        self.rundir.write("config.toml", to_toml(cfg))
        if self.provenance is not None:  # the checkout as the run started (a resumed run: its own)
            self.rundir.write("provenance.json", json.dumps(self.provenance, indent=1) + "\n")
        self.rundir.truncate_metrics(self.step, self.log)
        self.log(f"train {cfg.method}: {self.streams.how}; device {self.device}, world {self.d.world}, "
                 f"{'bf16' if self.bf16 else 'fp32'}, data {'memory' if self.resident else 'stream'}, "
                 f"{'compiled' if cfg.compile else 'eager'}")
        if self.changed:
            self.log(f"resumed at step {self.step} with " + ", ".join(f"{k} {a!r} -> {b!r}"
                                                                     for k, (a, b) in self.changed.items()))

    def _run(self) -> dict[str, Any]:
        cfg, n = self.cfg, self.nets
        if self.resume_ck is not None:
            self._restore(self.resume_ck)
            self.resume_ck = None
        self.prepare_nets()
        if self.d.main:
            self._start()
        t0 = time.perf_counter()
        valid = (ResidentSplit(self.store, self.valid, self.device) if self.valid is not None and self.d.main
                 else None)
        every = cfg.eval_every or self.epoch_steps
        start = self.step
        budget = cfg.time_budget * 60 if cfg.time_budget > 0 else math.inf
        # seconds kept free within the budget for the closing validation + save: a tenth of the budget (at
        # most 30 s) until one has been measured, then 1.5 x the longest measured
        reserve = min(30.0, 0.1 * budget)
        metrics = _Metrics(self.run_dir / "metrics.jsonl") if self.d.main else None
        tb = _tensorboard(self.run_dir) if (cfg.tensorboard and self.d.main) else None
        if self.changed:
            _write(metrics, None, {"step": self.step, "changed": self.changed})
        sums: dict[str, torch.Tensor] = {}
        t_log, steps_log, since = time.perf_counter(), 0, self.step
        progress = progress_bar(None if cfg.progress and self.d.main else False, transient=False)
        stopped_early = False
        shown, last_dice = "", None
        batches = self.batches()
        try:
            with progress:
                task = progress.add_task(cfg.method, total=cfg.max_steps, completed=self.step)
                while self.step < cfg.max_steps:
                    batch, state = next(batches)
                    self.ctx.step = self.step
                    losses = self.step_fn(self.ctx, batch)
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
                        shown = f"{cfg.method} loss {means['loss/total']:.4f}"
                        sums, steps_log, since = {}, 0, self.step
                    t_close = time.perf_counter()
                    if evaluating:
                        res = self.validate(valid)
                        if res is not None:
                            _write(metrics, tb, {"step": self.step, "valid/dice_mean": res["dice"]["mean"],
                                                 **{f"valid/dice/{c}": v for c, v in res["dice"].items()
                                                    if c != "mean"}})
                            last_dice = res["dice"]["mean"]
                    if shown:  # the latest losses, and the latest validation Dice once there is one
                        dice = "" if last_dice is None else f", valid Dice {last_dice:.3f} (best {self.best:.3f})"
                        progress.update(task, description=shown + dice)
                        shown = ""
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


class _Metrics:
    """metrics.jsonl, appended one flushed line per row; a failed write (a full disk) names the file."""

    def __init__(self, path: Path):
        self.path = path
        self.f = path.open("a")

    def write(self, text: str) -> None:
        from datakit.safe_io import os_error

        try:
            self.f.write(text)
            self.f.flush()
        except OSError as e:
            raise os_error(e, self.path) from None

    def close(self) -> None:
        try:
            self.f.close()
        except OSError:  # the write that failed has been reported; the rows before it are on disk
            pass


def _write(metrics: _Metrics | None, tb, row: dict[str, Any]) -> None:
    if metrics is not None:
        metrics.write(json.dumps(row) + "\n")
    if tb is not None:
        for k, v in row.items():
            if k != "step" and isinstance(v, int | float):
                tb.add_scalar(k, v, row["step"])


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise DatakitError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
    return SummaryWriter(str(run_dir / "tb"))


def train(cfg: TrainConfig, resume: bool = False, log=print, overwrite: bool = False,
          provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run training (joining the DDP group when launched by torchrun); returns a summary. Every input is
    checked before anything is written; ``overwrite`` replaces an earlier run at the new one's first
    checkpoint; ``provenance`` is written to RUN_DIR/provenance.json as the run starts."""
    d = Dist.from_env()
    device = pick_device(cfg.device, d.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # fixed shapes every step: let cuDNN pick its fastest kernels
    if d.world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        trainer = Trainer(cfg, resume, log, d, device, overwrite, provenance)
        try:
            return trainer.run()
        finally:
            trainer.close()
    finally:
        if d.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
