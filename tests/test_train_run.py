"""Training end to end on ACDC phantoms (64 x 64 store, narrow UNet): every method, resume, eval,
predict, CLI errors, 2-rank DDP, and a run that learns."""

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

from typer.testing import CliRunner  # noqa: E402

from datakit.store import Store  # noqa: E402
from train.cli import app  # noqa: E402

runner = CliRunner()
FAST = ["--width", "8", "--batch-size", "4", "--workers", "0", "--no-progress", "--log-every", "1"]


@pytest.fixture(scope="session")
def tiny_run(small_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-step pce run (read-only for the tests): checkpoints to evaluate, predict with, refuse."""
    run = tmp_path_factory.mktemp("tiny") / "run"
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # as one_torch_thread does, which session fixtures run before
    try:
        r = invoke("run", "--store", small_store, "--out", run, "--method", "pce", "--max-steps", 2, *FAST,
                   "--eval-every", 1)
    finally:
        torch.set_num_threads(n)
    assert r.exit_code == 0, r.output
    return run




def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", ["maag", "pce", "full"])
def test_each_method_trains_a_few_steps(small_store: Path, tmp_path: Path, method: str):
    run = tmp_path / "run"
    # one run through real loader workers (--data stream), the others resident in memory
    workers = ["--data", "stream", "--workers", "1"] if method == "maag" else []
    r = invoke("run", "--store", small_store, "--out", run, "--method", method, "--max-steps", 3, *FAST,
               *workers, "--eval-every", 3)
    assert r.exit_code == 0, r.output
    ms = [x for x in rows(run) if "loss/total" in x]
    assert [x["step"] for x in ms] == [1, 2, 3]
    assert all(np.isfinite(x["loss/total"]) and x["samples_per_s"] > 0 for x in ms)
    assert all(x["lr"] == pytest.approx(1e-5) for x in ms)  # the cyclic default starts at its lower bound
    if method == "maag":
        assert {"loss/adv", "loss/disc", "loss/ce_weight"} <= set(ms[0])
    assert any("valid/dice_mean" in x for x in rows(run))
    for name in ("last.pt", "best.pt"):
        ck = torch.load(run / "checkpoints" / name, weights_only=True)
        assert ck["step"] == 3 and ck["method"] == method
        assert (ck["disc"] is not None) == (method == "maag")
    assert 'method = "' + method + '"' in (run / "config.toml").read_text()


def test_resume_is_exact(small_store: Path, tmp_path: Path):
    common = ["--store", small_store, "--method", "maag", "--ckpt-every", 3, "--valid-split", "", *FAST]
    a, b = tmp_path / "a", tmp_path / "b"
    assert invoke("run", *common, "--out", a, "--max-steps", 6).exit_code == 0
    assert invoke("run", *common, "--out", b, "--max-steps", 3).exit_code == 0
    r = invoke("run", "--out", b, "--resume", "--max-steps", 6)
    assert r.exit_code == 0, r.output
    ca = torch.load(a / "checkpoints" / "last.pt", weights_only=True)
    cb = torch.load(b / "checkpoints" / "last.pt", weights_only=True)
    assert ca["step"] == cb["step"] == 6 and ca["sampler"] == cb["sampler"]
    for part in ("model", "disc"):
        for k, v in ca[part].items():
            assert torch.equal(v, cb[part][k]), f"{part}.{k} differs after resume"
    la = [x["loss/total"] for x in rows(a)]
    lb = [x["loss/total"] for x in rows(b) if "loss/total" in x]
    assert la == lb  # same losses at every step, the resumed half included
    assert {"step": 3, "changed": {"max_steps": [3, 6]}} in rows(b)  # the option changed on resume, recorded


def _oracle(store: Path):
    """A 'model' that returns the stored mask of each image as logits: eval must then score 1."""
    s = Store(store)
    table = {s.file["images"][i].tobytes(): s.file["masks"][i] for i in range(len(s))}

    class Oracle(torch.nn.Module):
        def forward(self, x):
            masks = np.stack([table[img.numpy().tobytes()] for img in x])
            logits = torch.nn.functional.one_hot(torch.from_numpy(masks).long().clamp_max(3), 4)
            return type("Out", (), {"logits": logits.permute(0, 3, 1, 2).float()})

    return s, Oracle()


def test_eval_scores_known_masks(small_store: Path):
    from train.inference import evaluate

    s, oracle = _oracle(small_store)
    res = evaluate(oracle, s, s.splits["valid"], torch.device("cpu"))
    patients = set(s.meta["patient"][s.splits["valid"]])
    assert res["volumes"] == 2 * len(patients)  # ED and ES volumes, slices reassembled
    assert res["dice"] == {"RV": 1.0, "MYO": 1.0, "LV": 1.0, "mean": 1.0}
    assert res["hd95_mm"]["mean"] == 0.0 and res["dice_std"]["mean"] == 0.0
    row = res["per_patient"][0]
    idx = s.splits["valid"][(s.meta["patient"][s.splits["valid"]] == row["patient"])
                            & (s.meta["frame"][s.splits["valid"]] == row["frame"])]
    assert row["slices"] == len(idx)


def test_eval_and_predict_cli(small_store: Path, tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import datakit.preview

    run = tiny_run
    out = tmp_path / "eval.json"
    r = invoke("eval", "--run", run, "--split", "test", "--json", out)
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["split"] == "test" and set(res["dice"]) == {"RV", "MYO", "LV", "mean"}
    assert set(res["hd95_mm"]) == {"RV", "MYO", "LV", "mean"}
    assert {"patient", "frame", "dice", "hd95_mm", "slices"} <= set(res["per_patient"][0])
    assert "dice" in r.output and "hd95_mm" in r.output
    r = invoke("eval", "--run", run, "--json", out)
    assert r.exit_code == 1 and "eval.json" in r.output and "--overwrite" in r.output  # exists: refused
    pred = tmp_path / "pred"
    ck = run / "checkpoints" / "last.pt"
    r = invoke("predict", "--checkpoint", ck, "--store", small_store, "--out", pred, "--split", "test")
    assert r.exit_code == 0, r.output
    import nibabel as nib

    files = sorted(pred.glob("*_pred.nii.gz"))  # ACDC stores have meta/source_shape: NIfTI
    s = Store(small_store)
    assert len(files) == 2 * len(set(s.meta["patient"][s.splits["test"]]))
    assert f"wrote {len(files)} NIfTI files to {pred}" in r.output
    img = nib.load(files[0])  # back on the source grid by default
    first = s.meta["patient"] == files[0].name.split("_")[0]
    assert img.shape[:2] == tuple(s.meta["source_shape"][first][0])
    assert np.allclose(img.header.get_zooms()[:2], s.meta["source_spacing"][first][0])
    assert set(np.unique(np.asarray(img.dataobj))) <= {0, 1, 2, 3}
    stored = tmp_path / "stored"
    assert invoke("predict", "--checkpoint", run / "checkpoints" / "last.pt", "--store", small_store, "--out",
                  stored, "--split", "test", "--grid", "stored").exit_code == 0
    img = nib.load(sorted(stored.glob("*.nii.gz"))[0])
    assert img.shape[:2] == (64, 64) and np.allclose(img.header.get_zooms()[:2], (3.0, 3.0))
    png = tmp_path / "png"
    montage = tmp_path / "prediction.png"
    previews: list[dict] = []
    real_preview = datakit.preview.write_preview

    def spy(*a, **k):
        previews.append(k)
        return real_preview(*a, **k)

    monkeypatch.setattr(datakit.preview, "write_preview", spy)
    r = invoke("predict", "--checkpoint", ck, "--store", small_store, "--out", png, "--split", "test",
               "--format", "png", "--preview", montage)
    assert r.exit_code == 0, r.output
    from PIL import Image

    pngs = sorted(png.glob("*.png"))
    assert len(pngs) == len(s.splits["test"]) and f"wrote {len(pngs)} PNG files" in r.output
    im = Image.open(pngs[0])
    assert im.mode == "P" and im.size == (64, 64)
    shown = Image.open(montage)  # image | mask | prediction for up to 8 test samples
    assert shown.size[0] > 600 and shown.size[1] > 200
    # the montage's third panel is the prediction (the one written as PNG) of the samples preview picks
    from datakit.preview import pick

    (kw,) = previews
    shown_pred = kw["predictions"]
    assert set(shown_pred) == {int(i) for i in pick(s, "test", 8, 0)} and len(shown_pred) == 8
    m = s.meta
    for i, lab in shown_pred.items():
        name = "_".join(str(x) for x in (m["patient"][i], m["frame"][i], m["view"][i]) if str(x))
        written = np.asarray(Image.open(png / f"{name}_s{int(m['slice'][i]):02d}.png"))
        assert lab.dtype == np.uint8 and np.array_equal(lab, written)
    r = invoke("predict", "--checkpoint", ck, "--store", small_store, "--out", png)
    assert r.exit_code == 1 and "not empty" in r.output


def test_run_directory_records_provenance(tiny_run: Path):
    import h5py

    import datakit

    p = json.loads((tiny_run / "provenance.json").read_text())
    assert p["torch"] == torch.__version__ and p["datakit"] == datakit.__version__
    assert p["numpy"] == np.__version__ and p["h5py"] == h5py.__version__
    assert "git_commit" in p and p["argv"]



def test_provenance_is_the_checkout_as_the_run_started(small_store: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkout that moves during a long run (a pull, a commit) must not be recorded as what ran."""
    import datakit.provenance
    import train.loop
    from train.loop import train as real_train

    monkeypatch.setattr(datakit.provenance, "git_state", lambda: ("a" * 40, False))

    def checkout_moves(*a, **k):
        summary = real_train(*a, **k)
        monkeypatch.setattr(datakit.provenance, "git_state", lambda: ("b" * 40, True))
        return summary

    monkeypatch.setattr(train.loop, "train", checkout_moves)  # train.cli imports it when the command runs
    r = invoke("run", "--store", small_store, "--out", tmp_path / "run", "--method", "pce", "--max-steps", 1, *FAST,
               "--valid-split", "")
    assert r.exit_code == 0, r.output
    p = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert p["git_commit"] == "a" * 40 and p["git_dirty"] is False

def test_eval_and_predict_show_progress_on_a_terminal(small_store: Path, tiny_run: Path, tmp_path: Path):
    import re

    terminal = {"FORCE_COLOR": "1", "COLUMNS": "120"}  # rich then draws its bar into the captured stderr
    n = len(Store(small_store).indices("test"))
    r = runner.invoke(app, ["eval", "--run", str(tiny_run), "--split", "test"], env=terminal)
    assert r.exit_code == 0, r.output
    assert re.findall(r"evaluating test.*?(\d+/\d+)", r.output)[-1] == f"{n}/{n}"
    r = runner.invoke(app, ["predict", "--checkpoint", str(tiny_run / "checkpoints" / "last.pt"), "--store",
                            str(small_store), "--out", str(tmp_path / "p"), "--split", "test"], env=terminal)
    assert r.exit_code == 0, r.output
    assert re.findall(r"predicting test.*?(\d+/\d+)", r.output)[-1] == f"{n}/{n}"
    assert "evaluating" not in invoke("eval", "--run", tiny_run, "--split", "test").output  # not a terminal


def test_eval_json_never_shares_a_temporary(tiny_run: Path, tmp_path: Path):
    """--json goes through a temporary unique to the run: another run's, here at the fixed name eval once
    used for every run, is left alone, and --overwrite replaces the file."""
    out = tmp_path / "eval.json"
    other = tmp_path / ".eval.json.tmp"
    other.write_text("another run's half-written JSON")
    out.write_text("previous")
    r = invoke("eval", "--run", tiny_run, "--split", "test", "--json", out, "--overwrite")
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["split"] == "test" and other.read_text() == "another run's half-written JSON"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".eval.json.tmp", "eval.json"]


def test_predict_checks_the_preview_folder_before_predicting(small_store: Path, tiny_run: Path, tmp_path: Path):
    pred = tmp_path / "pred"
    r = invoke("predict", "--checkpoint", tiny_run / "checkpoints" / "last.pt", "--store", small_store, "--out",
               pred, "--preview", tmp_path / "nowhere" / "m.png")
    assert r.exit_code == 1 and "output folder does not exist" in r.output and "nowhere" in r.output
    assert not pred.exists()  # refused up front, not after every prediction was written
    # the --out folder itself is made on the way: a montage inside it is fine
    r = invoke("predict", "--checkpoint", tiny_run / "checkpoints" / "last.pt", "--store", small_store, "--out",
               pred, "--split", "valid", "--format", "png", "--preview", pred / "m.png")
    assert r.exit_code == 0, r.output
    assert (pred / "m.png").is_file()


def test_eval_and_predict_refuse_bad_options(small_store: Path, tiny_run: Path, tmp_path: Path):
    ck = tiny_run / "checkpoints" / "last.pt"
    for args in (["--run", tiny_run, "--checkpoint", ck], []):  # both, neither
        r = invoke("eval", *args)
        assert r.exit_code == 1 and "exactly one of --run RUN_DIR or --checkpoint FILE" in r.output, r.output
    r = invoke("eval", "--checkpoint", ck)
    assert r.exit_code == 1 and "--checkpoint needs --store" in r.output
    r = invoke("predict", "--store", small_store, "--out", tmp_path / "p")  # predict takes --checkpoint alone
    assert r.exit_code == 2 and "--checkpoint" in r.output and not (tmp_path / "p").exists()
    for opt, bad in (("--format", "tiff"), ("--grid", "world")):
        r = invoke("predict", "--checkpoint", ck, "--store", small_store, "--out", tmp_path / "p", opt, bad)
        assert r.exit_code == 1 and f"{opt} must be" in r.output and repr(bad) in r.output, r.output
        assert not (tmp_path / "p").exists()
    for name, obj in (("weights.pt", {"model": {"w": torch.zeros(2)}}), ("tensor.pt", torch.zeros(2))):
        foreign = tmp_path / name
        torch.save(obj, foreign)  # readable by torch.load, but no train checkpoint
        for cmd, more in (("eval", []), ("predict", ["--out", tmp_path / "p"])):
            r = invoke(cmd, "--checkpoint", foreign, "--store", small_store, *more)
            assert r.exit_code == 1 and "not a train checkpoint" in r.output and name in r.output, r.output
    assert not (tmp_path / "p").exists()


def test_interrupted_run_says_what_is_kept(small_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import train.loop

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(train.loop, "train", interrupted)
    r = invoke("run", "--store", small_store, "--out", tmp_path / "run", *FAST)
    assert r.exit_code == 130
    assert "interrupted" in r.output and "--resume" in r.output and "nothing was written" not in r.output


def test_cli_refuses_bad_input_and_leaves_nothing(small_store: Path, tmp_path: Path):
    run = tmp_path / "run"
    r = invoke("run", "--store", tmp_path / "missing.h5", "--out", run)
    assert r.exit_code == 1 and "no such store file" in r.output and "missing.h5" in r.output
    assert not run.exists()
    r = invoke("run", "--store", small_store, "--out", run, "--method", "gan")
    assert r.exit_code == 2 and "--method" in r.output and not run.exists()  # not one of the listed choices
    cfg = tmp_path / "c.toml"
    cfg.write_text("max_step = 3\n")
    r = invoke("run", "--store", small_store, "--out", run, "--config", cfg)
    assert r.exit_code == 1 and "max_step" in r.output and "c.toml" in r.output and not run.exists()
    r = invoke("run", "--out", run, "--resume")
    assert r.exit_code == 1 and "last.pt" in r.output
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    r = invoke("run", "--store", small_store, "--out", run)
    assert r.exit_code == 1 and "--overwrite" in r.output
    assert [p.name for p in run.iterdir()] == ["notes.txt"]
    r = invoke("run", "--store", small_store, "--out", run, "--overwrite", "--max-steps", 1, "--valid-split", "",
               *FAST)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.toml", "metrics.jsonl", "notes.txt",
                                                   "provenance.json"]
    r = invoke("eval", "--run", tmp_path / "nowhere")
    assert r.exit_code == 1 and "nowhere" in r.output
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    r = invoke("eval", "--checkpoint", bad, "--store", small_store)
    assert r.exit_code == 1 and "bad.pt" in r.output



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
    import train.methods.supervised as supervised

    run = tmp_path / "run"
    common = ["--store", small_store, "--method", "pce", "--valid-split", "", *FAST]
    assert invoke("run", *common, "--out", run, "--max-steps", 2).exit_code == 0
    before = (run / "checkpoints" / "last.pt").read_bytes()
    real = supervised.partial_ce
    monkeypatch.setattr(supervised, "partial_ce", lambda *a, **k: real(*a, **k) * float("nan"))
    r = invoke("run", "--out", run, "--resume", "--max-steps", 4)
    assert r.exit_code == 1
    assert "loss/total is nan at step 3" in r.output and "last good checkpoint" in r.output
    assert (run / "checkpoints" / "last.pt").read_bytes() == before


def _maag_step_grads(store: Path, out: Path, adv_weight: float) -> tuple[dict, torch.Tensor]:
    """One maag train_step from the same weights and batch; returns the logged losses and the
    segmentor's gradient (flattened)."""
    from train.config import TrainConfig
    from train.loop import Trainer

    # fp32: the linearity checks below are exact only without bf16 rounding
    cfg = TrainConfig(store=store, out=out, method="maag", width=8, batch_size=2, workers=0, augment=False,
                      instance_noise=0.0, label_flip=0.0, device="cpu", adv_weight=adv_weight, progress=False,
                      precision="fp32")
    tr = Trainer(cfg, log=lambda m: None)
    batch, _ = next(tr.batches())
    losses = tr.step_fn(tr.ctx, batch)
    grad = torch.cat([p.grad.flatten() for p in tr.nets.raw_model.parameters() if p.grad is not None])
    return losses, grad


def test_adv_weight_changes_the_gradient_direction_and_zero_still_trains(small_store: Path, tmp_path: Path):
    """MAAG: total = |sg(g / ce)| ce + a g. The segmentor gradient is w dce + a dg: linear in a, with
    a direction that depends on a (a mere scale would be cancelled by Adam), and a = 0 keeps the
    rescaled scribble loss."""
    res = {a: _maag_step_grads(small_store, tmp_path / f"a{a}", a) for a in (0.0, 0.2, 1.0)}
    (l0, g0), (l2, g2), (l1, g1) = res[0.0], res[0.2], res[1.0]
    assert g0.abs().max() > 0  # adv_weight 0: the scribble loss still trains
    # the old bug scaled the whole loss by a: g(1.0) was exactly 5 g(0.2). Now g(a) = w dce + a dg, so
    # g(1.0) - 5 g(0.2) = -4 w dce: far from zero
    assert float((g1 - 5 * g2).norm() / g1.norm()) > 0.1
    # linear in a: g(1.0) - g(0) = 5 (g(0.2) - g(0))
    d1, d2 = g1 - g0, 5 * (g2 - g0)
    assert float((d1 - d2).norm() / d1.norm()) < 1e-3
    # loss/adv is a * g: 0 at a = 0, five times larger at 1.0 than at 0.2 (same g: same weights and batch)
    assert float(l0["loss/adv"]) == 0.0
    assert float(l1["loss/adv"]) == pytest.approx(5 * float(l2["loss/adv"]), rel=1e-4)
    # the scribble loss is rescaled to g's size whatever a: w ce == loss/adv / a
    assert float(l2["loss/ce_weight"] * l2["loss/ce"]) == pytest.approx(float(l2["loss/adv"]) / 0.2, rel=1e-4)


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


def test_plot_draws_the_runs_curves(tiny_run: Path, tmp_path: Path) -> None:
    """`train plot`: one PNG from several runs; curves are the logged rows; adversarial panel for maag."""
    from PIL import Image

    from train.curves import curves_figure, read_run

    maag = tmp_path / "m"  # a maag run's rows, in the loop's format (a real maag run is slower to make)
    maag.mkdir()
    (maag / "config.toml").write_text('method = "maag"\n')
    logged = [{"step": s, "loss/total": 1.0 / s, "loss/ce": 2.0 / s, "loss/adv": 0.3, "loss/disc": 0.6,
               "loss/ce_weight": 0.1, "lr": 1e-4, "samples_per_s": 5.0} for s in (1, 2, 3)]
    logged.insert(2, {"step": 2, "valid/dice_mean": 0.5, "valid/dice/LV": 0.5})
    (maag / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in logged))
    pce = read_run(tiny_run)
    assert pce.label == "run (pce)" and pce.series("valid/dice_mean")[0] == [1, 2]
    assert pce.series("valid/dice_mean")[1] == [r["valid/dice_mean"] for r in rows(tiny_run) if "valid/dice_mean" in r]
    assert pce.classes() == ["RV", "MYO", "LV"]
    m = read_run(maag)
    assert m.label == "m (maag)" and m.series("loss/ce") == ([1, 2, 3], [2.0, 1.0, 2.0 / 3])
    fig = curves_figure([pce, m])
    dice, per_class, ce, adv = fig.axes
    assert len(dice.lines) == 4  # a curve and a best marker per run
    assert len(per_class.lines) == 4 and len(ce.lines) == 2  # pce's three classes, maag's one
    assert adv.get_title() == "adversarial losses (LSGAN)" and len(adv.lines) == 2  # pce has none
    assert curves_figure([pce]).axes[3].get_title() == "learning rate"

    out = tmp_path / "curves.png"
    r = invoke("plot", tiny_run, maag, "--out", out)
    assert r.exit_code == 0 and "wrote" in r.output, r.output
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (1200, 800)
    r = invoke("plot", tiny_run, "--out", out)
    assert r.exit_code == 1 and "already exists" in r.output
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporaries left


def test_plot_never_shares_a_temporary(tiny_run: Path, tmp_path: Path) -> None:
    """The PNG goes through a temporary unique to the call: one at the name plot once used for every call
    of a process (another thread's, or a run that reused the PID) is left alone."""
    out = tmp_path / "curves.png"
    other = tmp_path / f".curves.png.{os.getpid()}.tmp.png"
    other.write_bytes(b"another call's half-written PNG")
    r = invoke("plot", tiny_run, "--out", out)
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:4] == b"\x89PNG" and other.read_bytes() == b"another call's half-written PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "curves.png"]


def test_plot_refuses_what_is_not_a_run(tiny_run: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    out = tmp_path / "c.png"
    r = invoke("plot", tiny_run, bad, "--out", out)
    assert r.exit_code == 1 and "bad: no metrics.jsonl" in r.output and not out.exists()
    (bad / "metrics.jsonl").write_text('{"step": 1, "loss/ce": 1.0}\n{"step": 2, "loss/ce": \n')
    r = invoke("plot", bad, "--out", out)
    assert r.exit_code == 1 and "metrics.jsonl: line 2 is not JSON" in r.output and "Traceback" not in r.output
    (bad / "metrics.jsonl").write_text('{"loss/ce": 1.0}\n')
    r = invoke("plot", bad, "--out", out)
    assert r.exit_code == 1 and "line 1 has no integer 'step'" in r.output
    r = invoke("plot", tmp_path / "nowhere", "--out", out)
    assert r.exit_code == 1 and "nowhere: not a run folder" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]
