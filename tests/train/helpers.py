"""What the tests of train/ share (a plain module: tests import it, never a conftest): the CLI runner and
the options of a fast run, a run's metrics rows, short runs and Trainers on the phantom store, and a
model that returns the stored masks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from typer.testing import CliRunner, Result

from datakit.store import Store
from train.cli import app
from train.config import TrainConfig
from train.loop import Trainer

runner = CliRunner()
FAST = ["--width", "8", "--batch-size", "4", "--workers", "0", "--no-progress", "--log-every", "1"]


def invoke(*args: object) -> Result:
    """``train ARGS`` in this process (each argument as text)."""
    return runner.invoke(app, [str(a) for a in args])


def rows(run: Path) -> list[dict[str, Any]]:
    """The rows of RUN_DIR/metrics.jsonl."""
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def train_run(store: Path, out: Path, method: str = "pce", steps: int = 2, *more: object) -> Path:
    """A short fast run through ``train run``, validating every step; asserts it succeeds. One torch
    thread, as the one_torch_thread fixture gives tests (session fixtures run before it)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        r = invoke("run", "--store", store, "--out", out, "--method", method, "--max-steps", steps, *FAST,
                   "--eval-every", 1, *more)
    finally:
        torch.set_num_threads(n)
    assert r.exit_code == 0, r.output
    return out


def train_config(store: Path, out: Path, **kw: Any) -> TrainConfig:
    """A narrow CPU run's config: width 8, batch 2, no loader workers, no progress bar, no validation;
    ``kw`` overrides any field."""
    base = {"store": store, "out": out, "width": 8, "batch_size": 2, "workers": 0, "device": "cpu",
            "progress": False, "valid_split": ""}
    return TrainConfig(**{**base, **kw})


def trainer(store: Path, out: Path, **kw: Any) -> Trainer:
    """A quiet Trainer of :func:`train_config` (nothing written until it runs)."""
    return Trainer(train_config(store, out, **kw), log=lambda m: None)


def oracle(store: Path, *, island: int | None = None, decoy: int | None = None) -> tuple[Store, torch.nn.Module]:
    """The store and a 'model' that returns each image's stored mask as logits (eval then scores 1), plus
    a 2 x 2 island of class ``island`` in the top-left corner of every slice (a stray component: the
    largest-component step removes it) and a 20 x 20 block of class ``decoy`` in the bottom-right corner
    (larger than the class itself: the largest-component step keeps it and drops the true structure, so
    that class's Dice falls)."""
    s = Store(store)
    table = {s.file["images"][i].tobytes(): s.file["masks"][i] for i in range(len(s))}
    k = len(s.classes)

    class Oracle(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> Any:
            masks = np.stack([table[img.numpy().tobytes()] for img in x]).copy()
            masks[masks == 255] = 0
            if island is not None:
                masks[:, :2, :2] = island
            if decoy is not None:
                masks[:, -20:, -20:] = decoy
            logits = torch.nn.functional.one_hot(torch.from_numpy(masks).long(), k)
            return type("Out", (), {"logits": logits.permute(0, 3, 1, 2).float()})

    return s, Oracle()
