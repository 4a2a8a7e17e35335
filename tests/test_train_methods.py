"""The method registry, the learning-rate schedule, resident data, bf16, the time budget and the
checkpoint version: the loop's contracts beyond a single method's maths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from datakit.errors import DatakitError  # noqa: E402
from tests.test_train_run import FAST, invoke, rows  # noqa: E402
from train import methods  # noqa: E402
from train.config import TrainConfig  # noqa: E402
from train.schedule import cyclic, lr_factor  # noqa: E402


def _cfg(store: Path, out: Path, **kw) -> TrainConfig:
    base = {"store": store, "out": out, "width": 8, "batch_size": 2, "workers": 0, "device": "cpu",
            "progress": False, "valid_split": ""}
    return TrainConfig(**{**base, **kw})


# -- registry ---------------------------------------------------------------------------------------
def test_unknown_method_names_the_known_ones(small_store: Path, tmp_path: Path):
    with pytest.raises(DatakitError, match="unknown method 'gan'; known methods: maag, pce, full"):
        methods.get("gan")
    r = invoke("run", "--store", small_store, "--out", tmp_path / "r", "--method", "gan", *FAST)
    assert r.exit_code == 1 and "known methods: maag, pce, full" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "r").exists()


def test_a_registered_method_is_all_the_loop_needs(small_store: Path, tmp_path: Path):
    """One register() call: its streams are read, its step is run, it has no discriminator."""
    calls: list[set[str]] = []

    def step(tr, batch):
        calls.append(set(batch))
        return methods.step_pce(tr, {"scribble": batch["scribble"]})

    methods.register(methods.Method("pce-twice", "test method", {"scribble": "scribble", "masks": "masks"}, False,
                                    methods.pick_maag, step))
    try:
        r = invoke("run", "--store", small_store, "--out", tmp_path / "r", "--method", "pce-twice",
                   "--max-steps", 2, *FAST, "--valid-split", "")
        assert r.exit_code == 0, r.output
        assert calls == [{"scribble", "masks"}] * 2
        ck = torch.load(tmp_path / "r" / "checkpoints" / "last.pt", weights_only=True)
        assert ck["method"] == "pce-twice" and ck["disc"] is None
    finally:
        methods.METHODS.pop("pce-twice")


# -- learning rate ----------------------------------------------------------------------------------
def test_cyclic_schedule_is_the_authors_triangle():
    # lower bound 1e-5 (their 1e-4 // 10 meant), upper 1e-4 at epoch 20, back down at 40; / (1 + 1e-4 e)
    assert cyclic(0, 20) == pytest.approx(0.1)
    assert cyclic(10, 20) == pytest.approx(0.55 / (1 + 1e-3))
    assert cyclic(20, 20) == pytest.approx(1.0 / (1 + 2e-3))
    assert cyclic(40, 20) == pytest.approx(0.1 / (1 + 4e-3))
    assert cyclic(60, 20) == pytest.approx(1.0 / (1 + 6e-3))
    f = lr_factor("cyclic", 10_000, steps_per_epoch=54)
    assert f(53) == f(0) and f(54) == pytest.approx(cyclic(1, 20))  # changes once per epoch
    assert lr_factor("constant", 10, 5)(7) == 1.0
    assert lr_factor("cosine", 10, 5)(10) == pytest.approx(0.0)


def test_every_method_follows_the_cycle_by_default(small_store: Path, tmp_path: Path):
    """Adam's lr in a real Trainer: the cycle's values at epoch boundaries, for G and D alike."""
    from train.loop import Trainer

    for method in ("maag", "full"):
        tr = Trainer(_cfg(small_store, tmp_path / method, method=method, lr_half_period=2), log=lambda m: None)
        e = tr.epoch_steps
        seen = []
        for step in range(4 * e + 1):
            if step % e == 0:
                seen.append(tr.nets.opt_g.param_groups[0]["lr"])
                if tr.nets.opt_d is not None:
                    assert tr.nets.opt_d.param_groups[0]["lr"] == seen[-1]
            tr.nets.opt_g.step()
            tr.nets.sched_g.step()
            if tr.nets.opt_d is not None:
                tr.nets.opt_d.step()
                tr.nets.sched_d.step()
        want = [1e-4 * cyclic(k, 2) for k in range(5)]
        assert seen == pytest.approx(want)
        assert seen[2] == pytest.approx(1e-4 / (1 + 2e-4)) and seen[0] == pytest.approx(1e-5)


# -- data, precision, budget ------------------------------------------------------------------------
def test_resident_batches_equal_the_loaders(small_store: Path, tmp_path: Path):
    from train.data import ResidentData, StoreBatches
    from train.loop import Trainer

    tr = Trainer(_cfg(small_store, tmp_path / "r", method="maag"), log=lambda m: None)
    data = ResidentData(tr.store, tr.streams, tr.method.streams, torch.device("cpu"))
    reader = StoreBatches(small_store, tr.method.streams)
    ix = tr.streams.indices
    request = {"scribble": [int(ix["scribble"][k]) for k in (5, 1, 9)],
               "unlabelled": [int(ix["unlabelled"][k]) for k in (2, 2, 0)],
               "masks": [int(i) for i in ix["masks"][:3][::-1]]}
    got = data.batch(request)
    for name, idx in request.items():
        for f, t in got[name].items():
            want = np.stack([reader.read(f, [i])[0] for i in idx])
            assert np.array_equal(t.numpy(), want), (name, f)


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


def test_the_segmentor_step_leaves_the_discriminator_gradients_alone(small_store: Path, tmp_path: Path):
    """No D weight gradient is computed in the G step: D's grads after the iteration are the D step's."""
    from train.loop import Trainer

    tr = Trainer(_cfg(small_store, tmp_path / "r", method="maag", precision="fp32"), log=lambda m: None)
    snap = {}
    step_d = tr.step_d

    def spy(loss):
        step_d(loss)
        snap.update({k: p.grad.clone() for k, p in tr.nets.raw_disc.named_parameters()})

    tr.step_d = spy
    batch, _ = next(tr.batches())
    tr.method.step(tr, batch)
    assert snap
    for k, p in tr.nets.raw_disc.named_parameters():
        assert torch.equal(p.grad, snap[k]), k
        assert p.requires_grad


# -- checkpoints ------------------------------------------------------------------------------------
def test_checkpoints_of_the_old_architecture_are_refused(small_store: Path, tmp_path: Path):
    run = tmp_path / "r"
    assert invoke("run", "--store", small_store, "--out", run, "--method", "pce", "--max-steps", 1,
                  *FAST, "--valid-split", "").exit_code == 0
    ck = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    ck["version"] = 1
    old = tmp_path / "old.pt"
    torch.save(ck, old)
    r = invoke("eval", "--checkpoint", old, "--store", small_store, "--split", "valid")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "old.pt" in r.output and "older train" in r.output and "architecture has changed" in r.output
    # --resume from such a run is refused the same way
    torch.save(ck, run / "checkpoints" / "last.pt")
    r = invoke("run", "--out", run, "--resume", "--max-steps", 2)
    assert r.exit_code == 1 and "older train" in r.output
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 1


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


def test_a_config_that_is_not_a_regular_file_is_named(tmp_path: Path):
    import os

    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    r = invoke("run", "--config", fifo)
    assert r.exit_code == 1 and "not a regular file" in r.output and "config.toml" in r.output
