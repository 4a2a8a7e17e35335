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
    with pytest.raises(DatakitError, match="unknown method 'gan'; known methods: maag, pce, full, em"):
        methods.get("gan")
    r = invoke("run", "--store", small_store, "--out", tmp_path / "r", "--method", "gan", *FAST)
    # a choice of the option (listed by --help): Click's usage error, exit 2, naming every choice
    flat = " ".join(r.output.replace("│", " ").split())  # rich wraps the message in a box
    assert r.exit_code == 2 and "'gan' is not one of 'maag', 'pce', 'full', 'em'" in flat, r.output
    assert "Traceback" not in r.output and not (tmp_path / "r").exists()
    config = tmp_path / "c.toml"  # in a config file: the key and the file named, exit 1
    config.write_text(f'store = "{small_store}"\nout = "{tmp_path / "r"}"\nmethod = "gan"\n')
    r = invoke("run", "--config", config, *FAST)
    assert r.exit_code == 1 and f"error: {config}: method: unknown method 'gan'; known methods: maag" in r.output
    assert not (tmp_path / "r").exists()


def test_a_registered_method_is_all_the_loop_needs(small_store: Path, tmp_path: Path):
    """One register() call: its streams are read, its step is run, it has no discriminator."""
    calls: list[set[str]] = []

    from pydantic import BaseModel, Field

    from train.cli import _build_run
    from train.methods.supervised import step_pce

    seen: list[float] = []

    class TwiceOptions(BaseModel):
        twice_factor: float = Field(1.0, ge=0, description="A test option.")

    def step(ctx, batch):
        calls.append(set(batch))
        seen.append(ctx.opts.twice_factor)
        return step_pce(ctx, {"scribble": batch["scribble"]})

    methods.register(methods.Method("pce-twice", "test method", {"scribble": "scribble", "masks": "masks"},
                                    "train.methods.streams:pick_maag", step, options=TwiceOptions))
    _build_run()  # the CLI lists the methods registered when it is built
    try:
        r = invoke("run", "--store", small_store, "--out", tmp_path / "r", "--method", "pce-twice",
                   "--max-steps", 2, *FAST, "--valid-split", "", "--twice-factor", 3)
        assert r.exit_code == 0, r.output
        assert calls == [{"scribble", "masks"}] * 2 and seen == [3.0, 3.0]
        ck = torch.load(tmp_path / "r" / "checkpoints" / "last.pt", weights_only=True)
        assert ck["method"] == "pce-twice" and ck["disc"] is None and ck["config"]["twice_factor"] == 3.0
        assert "twice_factor = 3.0" in (tmp_path / "r" / "config.toml").read_text()
        r = invoke("run", "--store", small_store, "--out", tmp_path / "r2", "--method", "pce",
                   "--max-steps", 2, *FAST, "--twice-factor", 3)  # another method's option: refused
        assert r.exit_code == 1 and "--twice-factor: is an option of method 'pce-twice'" in r.output, r.output
    finally:
        methods.METHODS.pop("pce-twice")
        _build_run()


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
@pytest.mark.parametrize("rank,world", [(0, 1), (1, 2)])
def test_resident_batches_equal_the_loaders_for_epochs_and_resume(small_store: Path, tmp_path: Path, rank: int,
                                                                  world: int, monkeypatch: pytest.MonkeyPatch):
    """--data memory and --data stream deliver the same batches (each sorted by sample index) with the
    same sampler states, over several epochs of every stream and from a state taken mid-epoch; the
    resident path puts each stream's epoch of rows on the device once, not a copy per step."""
    from train.data import MultiStreamSampler, ResidentData, make_loader
    from train.loop import Trainer

    tr = Trainer(_cfg(small_store, tmp_path / "r", method="maag"), log=lambda m: None)
    batch, kinds = 3, tr.method.streams
    data = ResidentData(tr.store, tr.streams, kinds, torch.device("cpu"))
    copies: list[str] = []
    epoch_rows = data.epoch_rows
    monkeypatch.setattr(data, "epoch_rows", lambda name, b: copies.append(name) or epoch_rows(name, b))

    def streamed(state=None):
        loader, _ = make_loader(small_store, tr.streams, kinds, batch, seed=0, workers=0, rank=rank, world=world,
                                state=state)
        for b in loader:
            yield b, b.pop("state")

    def resident(state=None):
        return data.batches(MultiStreamSampler(tr.streams.indices, batch, 0, rank, world, state))

    epoch_len = {k: MultiStreamSampler(tr.streams.indices, batch, 0, rank, world).epoch_batches(k) for k in kinds}
    steps = 3 * max(epoch_len.values()) + 1  # three epochs of the longest stream, more of the others
    assert len(set(epoch_len.values())) > 1  # streams of different lengths: epochs start at different steps

    def same(a: dict, b: dict) -> bool:
        return a.keys() == b.keys() and all(
            a[k].keys() == b[k].keys() and all(t.dtype == b[k][f].dtype and torch.equal(t, b[k][f])
                                               for f, t in a[k].items()) for k in a)

    def check(got, want, n: int) -> list[tuple[dict, dict]]:
        out = []
        for step in range(n):
            (a, sa), (b, sb) = next(got), next(want)
            assert sa == sb and same(a, b), step
            out.append((a, sa))
        return out

    run = check(resident(), streamed(), steps)
    last = run[-1][1]
    assert {k: v[0] for k, v in last.items()} == {k: (steps - 1) // epoch_len[k] for k in kinds}
    # one copy of rows per stream per epoch started
    assert sorted(copies) == sorted(k for k in kinds for _ in range(last[k][0] + 1))
    # resumed from the state after a step in the middle of the longest stream's second epoch: the
    # batches that followed it, in both modes
    k = max(epoch_len.values()) + 1
    resumed = check(resident(run[k][1]), streamed(run[k][1]), 5)
    assert all(sa == sb and same(a, b) for (a, sa), (b, sb) in zip(resumed, run[k + 1:k + 6], strict=True))



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


def test_the_segmentor_step_leaves_the_discriminator_gradients_alone(small_store: Path, tmp_path: Path):
    """No D weight gradient is computed in the G step: D's grads after the iteration are the D step's."""
    from train.loop import Trainer

    tr = Trainer(_cfg(small_store, tmp_path / "r", method="maag", precision="fp32"), log=lambda m: None)
    snap = {}
    step_d = tr.ctx.step_d

    def spy(loss):
        step_d(loss)
        snap.update({k: p.grad.clone() for k, p in tr.nets.raw_disc.named_parameters()})

    tr.ctx.step_d = spy
    batch, _ = next(tr.batches())
    tr.step_fn(tr.ctx, batch)
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
