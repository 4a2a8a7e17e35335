"""train/nets.py: --compile trains through torch.compile, its checkpoints load eager, and a failing
compiler falls back to eager with one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from tests.train.helpers import FAST, invoke, rows  # noqa: E402


def test_a_compiled_run_trains_and_its_checkpoint_loads_in_eval(small_store: Path, tmp_path: Path):
    """--compile: a few pce steps through torch.compile (inductor, gcc on this CPU) train; checkpoints
    hold the raw module's keys (no ``_orig_mod.``), validation and train eval run eager. The smallest
    run (pce: the UNet alone; 64 x 64, width 4, batch 2): still 1.5-3 min on the 2-core machine with
    a cold inductor cache (~60 C++ kernels for the forward and backward, whatever the size)."""
    import torch._inductor.config as inductor

    torch._dynamo.reset()  # nothing cached from another test
    run = tmp_path / "run"
    with inductor.patch(compile_threads=1):  # no pool of compile workers to start on 2 cores
        r = invoke("run", "--store", small_store, "--out", run, "--method", "pce", "--max-steps", 3, "--compile",
                   "--width", "4", "--batch-size", "2", "--workers", "0", "--no-progress", "--log-every", "1",
                   "--eval-every", "3")
    assert r.exit_code == 0, r.output
    assert "compiled" in r.output and "torch.compile failed" not in r.output, r.output
    assert all(np.isfinite(x["loss/total"]) for x in rows(run) if "loss/total" in x)
    ck = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ck["step"] == 3 and not any(k.startswith("_orig_mod") for k in ck["model"])
    assert "compile = true" in (run / "config.toml").read_text()
    r = invoke("eval", "--run", run, "--split", "valid")
    assert r.exit_code == 0 and "valid:" in r.output, r.output


def test_compile_falls_back_to_eager_with_one_line(small_store: Path, tmp_path: Path):
    """No working C compiler: one log line names the failure, maag (segmentor and discriminator) trains
    eager, and the losses are those of an eager run (the failed compile changed nothing)."""
    import torch._inductor.config as inductor

    torch._dynamo.reset()  # a graph cached by another test would not be compiled again, nor fail
    common = ["--store", small_store, "--method", "maag", "--max-steps", 2, *FAST, "--valid-split", ""]
    with inductor.patch({"cpp.cxx": ("/nonexistent/g++",), "compile_threads": 1}):
        r = invoke("run", *common, "--out", tmp_path / "c", "--compile")
    assert r.exit_code == 0, r.output
    assert r.output.count("torch.compile failed") == 1 and "training continues eager" in r.output, r.output
    assert "C++ compiler" in r.output and "Traceback" not in r.output
    assert invoke("run", *common, "--out", tmp_path / "e").exit_code == 0
    assert rows(tmp_path / "c") == [{**x, "samples_per_s": y["samples_per_s"]}
                                    for x, y in zip(rows(tmp_path / "e"), rows(tmp_path / "c"), strict=True)]
