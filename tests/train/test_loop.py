"""train/loop.py, the Trainer: exact resume (a teacher and two decoders included), --data memory and
stream training alike, bf16, the time budget, what it refuses before training (image size, label
values), a NaN loss, runs that learn, and 2-rank DDP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from datakit.store import Store  # noqa: E402
from tests.train.helpers import FAST, invoke, rows  # noqa: E402


def _run_and_resume(store: Path, tmp_path: Path, method: str, steps: int, parts: tuple[str, ...],
                    *more: object) -> tuple[dict, dict]:
    """Run a: ``steps`` steps; run b: half of them, then --resume to ``steps``. Asserts that b resumed, that
    the checkpoint ``parts`` (model, disc, teacher) of both runs are equal and that both logged the same
    losses at every step, the resumed half included; returns the runs' last checkpoints."""
    common = ["--store", store, "--method", method, "--ckpt-every", steps // 2, "--valid-split", "", *FAST, *more]
    a, b = tmp_path / "a", tmp_path / "b"
    assert invoke("run", *common, "--out", a, "--max-steps", steps).exit_code == 0
    assert invoke("run", *common, "--out", b, "--max-steps", steps // 2).exit_code == 0
    r = invoke("run", "--out", b, "--resume", "--max-steps", steps)
    assert r.exit_code == 0, r.output
    ca = torch.load(a / "checkpoints" / "last.pt", weights_only=True)
    cb = torch.load(b / "checkpoints" / "last.pt", weights_only=True)
    for part in parts:
        for k, v in ca[part].items():
            assert torch.equal(v, cb[part][k]), f"{part}.{k} differs after resume"
    assert [x["loss/total"] for x in rows(a)] == [x["loss/total"] for x in rows(b) if "loss/total" in x]
    return ca, cb


def test_resume_is_exact(small_store: Path, tmp_path: Path):
    ca, cb = _run_and_resume(small_store, tmp_path, "maag", 6, ("model", "disc"))
    assert ca["step"] == cb["step"] == 6 and ca["sampler"] == cb["sampler"]
    assert {"step": 3, "changed": {"max_steps": [3, 6]}} in rows(tmp_path / "b")  # the option changed, recorded


@pytest.mark.parametrize("method", ["ustm", "dmpls"])
def test_resume_is_exact_with_a_teacher_and_two_decoders(small_store: Path, tmp_path: Path, method: str):
    # ustm: its ramp spans --max-steps, which differs here
    more = ["--ustm-passes", 2, "--ustm-weight", 0] if method == "ustm" else []
    _run_and_resume(small_store, tmp_path, method, 4, ("model", "teacher") if method == "ustm" else ("model",), *more)


def test_memory_and_stream_train_identically(small_store: Path, tmp_path: Path):
    """The same batches in both --data modes: the same losses at every step and the same weights."""
    for data in ("memory", "stream"):
        r = invoke("run", "--store", small_store, "--out", tmp_path / data, "--method", "maag", "--max-steps", 3,
                   *FAST, "--valid-split", "", "--data", data)
        assert r.exit_code == 0 and f"data {data}" in r.output, r.output
    assert [x["loss/total"] for x in rows(tmp_path / "memory")] == [x["loss/total"] for x in rows(tmp_path / "stream")]
    a, b = (torch.load(tmp_path / d / "checkpoints" / "last.pt", weights_only=True) for d in ("memory", "stream"))
    assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())


def test_bf16_on_cpu_is_a_choice(small_store: Path, tmp_path: Path):
    from train.inference import autocast, use_bf16

    cpu = torch.device("cpu")
    assert use_bf16(cpu, "bf16") and not use_bf16(cpu, "fp32")
    conv = torch.nn.Conv2d(1, 2, 3)
    with autocast(cpu, True):
        assert conv(torch.rand(1, 1, 8, 8)).dtype == torch.bfloat16
    with autocast(cpu, False):
        assert conv(torch.rand(1, 1, 8, 8)).dtype == torch.float32
    for precision in ("bf16", "fp32"):
        run = tmp_path / precision
        r = invoke("run", "--store", small_store, "--out", run, "--method", "maag", "--max-steps", 2, *FAST,
                   "--precision", precision, "--valid-split", "")
        assert r.exit_code == 0 and f"cpu, world 1, {precision}" in r.output, r.output
        assert all(np.isfinite(x["loss/total"]) for x in rows(run))


def test_time_budget_stops_cleanly_validates_and_saves(small_store: Path, tmp_path: Path):
    run = tmp_path / "budget"
    r = invoke("run", "--store", small_store, "--out", run, "--method", "pce", "--max-steps", 100000, *FAST,
               "--time-budget", "0.05", "--eval-from", "0", "--eval-every", "100000")
    assert r.exit_code == 0, r.output
    assert "--time-budget 0.05 min: stopped after step" in r.output
    ck = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert 0 < ck["step"] < 100000
    assert (run / "checkpoints" / "best.pt").is_file()  # validated at the stop, as at a last step
    assert any(x.get("step") == ck["step"] and "valid/dice_mean" in x for x in rows(run))


def test_a_store_whose_size_the_unet_cannot_pool_is_refused(tmp_path: Path):
    from datakit.pipeline import ConvertOptions, convert
    from datakit.sources.acdc import AcdcSource
    from datakit.synth.acdc import write_acdc_phantoms

    root = tmp_path / "ACDC"
    write_acdc_phantoms(root, patients=2, seed=0, cine=False)
    store = tmp_path / "s40.h5"
    convert(AcdcSource(root, spacing=4.0, size=40), ConvertOptions(out=store, workers=1, progress=False),
            log=lambda m: None)
    r = invoke("run", "--store", store, "--out", tmp_path / "r", "--method", "pce", *FAST)
    assert r.exit_code == 1 and "not a multiple of 16" in r.output and "s40.h5" in r.output
    assert "Traceback" not in r.output


def _set_label(store: Path, name: str, i: int, value: int) -> None:
    import h5py

    with h5py.File(store, "r+") as f:
        a = f[name][i]
        a[0, 0] = value
        f[name][i] = a


def test_run_refuses_bad_labels_it_reads_and_only_those(small_store: Path, tmp_path: Path):
    """A label value outside the classes (and 255) in a sample the run reads (its streams' scribbles or
    masks, the validation masks): exit 1 with the store, the sample and the values named, no
    traceback, RUN_DIR untouched (even with --overwrite). Samples the run does not read are not
    scanned: a bad test mask lets training run, and train eval on the test split refuses it."""
    import shutil

    from train.methods import resolve_streams

    s = Store(small_store)
    scribble = int(resolve_streams(s, "pce").indices["scribble"][1])
    valid, test = int(s.splits["valid"][2]), int(s.splits["test"][0])
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("an earlier run\n")
    for name, i, method in (("scribbles", scribble, "pce"), ("masks", valid, "full")):
        bad = tmp_path / f"bad_{name}.h5"
        shutil.copy(small_store, bad)
        _set_label(bad, name, i, 9)
        r = invoke("run", "--store", bad, "--out", run, "--method", method, "--overwrite", *FAST)
        assert r.exit_code == 1, r.output
        assert f"{bad}: {name}[{i}]: values [9] outside classes 0-3 and 255" in r.output, r.output
        assert "Traceback" not in r.output
        assert [p.name for p in run.iterdir()] == ["metrics.jsonl"]
    assert invoke("run", "--store", tmp_path / "bad_scribbles.h5", "--out", tmp_path / "full", "--method", "full",
                  "--max-steps", 1, "--valid-split", "", *FAST).exit_code == 0  # full reads no scribble
    bad = tmp_path / "bad_test.h5"
    shutil.copy(small_store, bad)
    _set_label(bad, "masks", test, 7)
    r = invoke("run", "--store", bad, "--out", tmp_path / "t", "--method", "maag", "--max-steps", 1, *FAST,
               "--eval-every", 1)
    assert r.exit_code == 0, r.output
    r = invoke("eval", "--run", tmp_path / "t", "--split", "test")
    assert r.exit_code == 1 and f"masks[{test}]: values [7] outside classes 0-3 and 255" in r.output, r.output


def test_nan_loss_stops_with_clear_message_keeping_checkpoint(small_store: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch):
    import train.methods.context as context  # StepContext.scribble_ce: every method's scribble CE

    run = tmp_path / "run"
    common = ["--store", small_store, "--method", "pce", "--valid-split", "", *FAST]
    assert invoke("run", *common, "--out", run, "--max-steps", 2).exit_code == 0
    before = (run / "checkpoints" / "last.pt").read_bytes()
    real = context.partial_ce
    monkeypatch.setattr(context, "partial_ce", lambda *a, **k: real(*a, **k) * float("nan"))
    r = invoke("run", "--out", run, "--resume", "--max-steps", 4)
    assert r.exit_code == 1
    assert "loss/total is nan at step 3" in r.output and "last good checkpoint" in r.output
    assert (run / "checkpoints" / "last.pt").read_bytes() == before


def test_a_short_run_learns(small_store: Path, tmp_path: Path):
    """Full masks, 150 steps of a narrow UNet: validation Dice far above chance (about 0.05 here).

    LV, the class inside the others, is learnt last (after about 110 steps with four gated blocks)."""
    run = tmp_path / "learn"
    r = invoke("run", "--store", small_store, "--out", run, "--method", "full", "--max-steps", 150,
               "--width", "8", "--batch-size", "8", "--workers", "0", "--no-progress", "--lr", "3e-3",
               "--lr-schedule", "constant",
               "--no-augment", "--eval-every", "25", "--eval-from", "0", "--log-every", "25")
    assert r.exit_code == 0, r.output
    out = tmp_path / "valid.json"
    assert invoke("eval", "--run", run, "--split", "valid", "--json", out).exit_code == 0
    res = json.loads(out.read_text())
    assert res["dice"]["LV"] > 0.6 and res["dice"]["mean"] > 0.25, res["dice"]
    losses = [x["loss/total"] for x in rows(run) if "loss/total" in x]
    assert losses[-1] < 0.5 * losses[0]


def test_a_short_run_learns_from_scribbles(small_store: Path, tmp_path: Path):
    """Partial CE on the phantoms' scribbles, 150 steps: best validation Dice well above chance.

    Chance (a uniform guess over 4 classes, each foreground class ~3 % of the pixels) is a Dice of
    about 0.05; scribbles are sparse (the phantoms' LV scribble is a few pixels at 3 mm), so the
    threshold is on the mean: three times chance.
    """
    run = tmp_path / "learn_pce"
    r = invoke("run", "--store", small_store, "--out", run, "--method", "pce", "--max-steps", 150,
               "--width", "8", "--batch-size", "8", "--workers", "0", "--no-progress", "--lr", "3e-3",
               "--lr-schedule", "constant",
               "--eval-every", "25", "--eval-from", "0", "--log-every", "25")
    assert r.exit_code == 0, r.output
    out = tmp_path / "valid.json"
    assert invoke("eval", "--run", run, "--split", "valid", "--json", out).exit_code == 0
    dice = json.loads(out.read_text())["dice"]
    assert dice["mean"] > 0.15, dice


def test_two_rank_ddp_on_cpu(small_store: Path, tmp_path: Path):
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(port), "-m", "train", "run", "--store", str(small_store), "--out", str(run),
           "--method", "maag",
           "--max-steps", "2", "--eval-every", "2", "--device", "cpu", *FAST]
    # own session, so that a hang kills torchrun's rank processes too, not torchrun alone
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         start_new_session=True)
    try:
        _, err = p.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise
    assert p.returncode == 0, err[-3000:]
    assert "world 2" in err
    ms = [x["step"] for x in rows(run) if "loss/total" in x]
    assert ms == [1, 2]  # rank 0 alone writes
    ck = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ck["step"] == 2 and len(ck["rng"]) == 2
    assert ck["sampler"]["scribble"] == [0, 2]
