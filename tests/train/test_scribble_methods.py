"""The scribble methods beside MAAG (train/methods/regularised.py, ustm.py, dual.py and their terms in
train/losses.py): what defines each, then each trains, checkpoints and resumes through the CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from tests.test_train_run import FAST, invoke, rows  # noqa: E402
from train import losses  # noqa: E402

NEW = ["em", "tv", "gatedcrf", "mumford_shah", "ustm", "dmpls", "dmsps"]


def _probs(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits, dim=1)


# -- the terms -----------------------------------------------------------------------------------------
def test_entropy_falls_as_predictions_sharpen():
    logits = torch.randn(2, 4, 16, 16)
    values = [losses.entropy(_probs(logits * t)).item() for t in (0.0, 1.0, 3.0, 10.0, 100.0)]
    assert values[0] == pytest.approx(1.0, abs=1e-4)  # uniform: log K / log K
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    assert values[-1] < 0.05


def test_total_variation_is_the_foreground_contour():
    blob = torch.zeros(1, 4, 32, 32)
    blob[:, 0] = 1
    blob[:, 0, 8:24, 8:24], blob[:, 3, 8:24, 8:24] = 0, 1
    tiles = torch.zeros(1, 4, 32, 32)  # the same area as 16 squares of 4 x 4: four times the boundary
    tiles[:, 0] = 1
    for r in range(0, 32, 8):
        for c in range(0, 32, 8):
            tiles[:, 0, r:r + 4, c:c + 4], tiles[:, 3, r:r + 4, c:c + 4] = 0, 1
    flat = torch.zeros(1, 4, 32, 32)
    flat[:, 0] = 1
    assert losses.total_variation(flat).item() == 0.0
    assert 0 < losses.total_variation(blob).item() < losses.total_variation(tiles).item()
    # only the foreground channels count: a background channel's own edges change nothing
    assert losses.total_variation(blob) == losses.total_variation(torch.cat([flat[:, :1], blob[:, 1:]], 1))


def _two_region_image(size: int = 32) -> torch.Tensor:
    img = torch.zeros(1, 1, size, size)
    img[..., :, size // 2:] = 1.0  # a vertical edge in the middle
    return img


def _labels_to_probs(labels: torch.Tensor, k: int = 2) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, k).permute(0, 3, 1, 2).float()


def test_gated_crf_is_lower_for_labels_that_follow_the_image_edges():
    img = _two_region_image()
    follows = torch.zeros(1, 32, 32, dtype=torch.long)
    follows[..., 16:] = 1
    crosses = torch.zeros(1, 32, 32, dtype=torch.long)
    crosses[..., 8:24, :] = 1  # a horizontal band: its boundary cuts through both regions
    a = losses.gated_crf(_labels_to_probs(follows), img, radius=3, sigma_xy=6, sigma_intensity=0.1)
    b = losses.gated_crf(_labels_to_probs(crosses), img, radius=3, sigma_xy=6, sigma_intensity=0.1)
    assert a.item() < 1e-3 < b.item()  # across the image edge the kernel is ~0: the boundary there is free
    # a constant prediction costs nothing, whatever the image
    assert losses.gated_crf(_labels_to_probs(torch.zeros_like(follows)), img, 3).item() == pytest.approx(0.0)


def test_gated_crf_leaves_out_neighbours_outside_the_image():
    """A constant label map next to the border: zero (the original's zero padding would charge the border)."""
    img = torch.rand(1, 1, 16, 16)
    p = _labels_to_probs(torch.ones(1, 16, 16, dtype=torch.long))
    assert losses.gated_crf(p, img, radius=5).item() == pytest.approx(0.0, abs=1e-6)


def test_gated_crf_gradient_flows_to_the_prediction_only():
    img = _two_region_image().requires_grad_(False)
    logits = torch.randn(1, 2, 32, 32, requires_grad=True)
    losses.gated_crf(_probs(logits), img, radius=2).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_mumford_shah_prefers_the_partition_of_the_image_regions():
    img = _two_region_image()
    right = torch.zeros(1, 32, 32, dtype=torch.long)
    right[..., 16:] = 1
    shifted = torch.zeros(1, 32, 32, dtype=torch.long)
    shifted[..., 8:] = 1
    a = losses.mumford_shah(_labels_to_probs(right), img)
    b = losses.mumford_shah(_labels_to_probs(shifted), img)
    # the right partition: each class's pixels equal its mean (level term 0), one edge of TV
    assert a.item() == pytest.approx(2 * 32 / (32 * 32), rel=1e-4)
    assert b.item() > a.item()
    # the means are of the image within each class (Kim and Ye), not of the prediction weighted by the image
    three = torch.zeros(1, 1, 4, 6)
    three[..., 2:4], three[..., 4:] = 0.5, 1.0  # columns: 0 0 | .5 .5 | 1 1
    split = torch.zeros(1, 4, 6, dtype=torch.long)
    split[..., 2:] = 1  # class 1 holds the .5 and the 1 columns: its mean .75
    level = 4 * 4 * 0.25 ** 2  # 16 pixels of class 1, each (I - .75)^2; class 0 is constant
    tv = 2 * 4  # one vertical edge, 4 rows, two channels
    assert losses.mumford_shah(_labels_to_probs(split), three).item() == pytest.approx((level + tv) / 24, rel=1e-5)


def test_dice_loss_and_soft_ce_by_hand():
    target = torch.tensor([[[0, 1], [2, 2]]])
    p = _labels_to_probs(target, 3)
    assert losses.dice_loss(p, target).item() == pytest.approx(0.0, abs=1e-6)
    uniform = torch.full((1, 3, 2, 2), 1 / 3)
    # per class over the batch: (2 sum p t + s) / (sum p^2 + sum t^2 + s)
    counts = torch.tensor([1.0, 1.0, 2.0])
    dice = (2 * counts / 3 + 1e-5) / (4 / 9 + counts + 1e-5)
    assert losses.dice_loss(uniform, target).item() == pytest.approx((1 - dice).mean().item(), rel=1e-5)
    assert losses.soft_ce(uniform, uniform).item() == pytest.approx(-math.log(1 / 3 * 0.999 + 5e-4), rel=1e-5)


def test_dmpls_pseudo_label_is_the_argmax_of_the_beta_mix():
    p1 = torch.tensor([[[[0.6]], [[0.4]]]])  # class 0 by decoder 1
    p2 = torch.tensor([[[[0.1]], [[0.9]]]])  # class 1 by decoder 2
    assert losses.mixed_pseudo_label(p1, p2, 1.0).item() == 0
    assert losses.mixed_pseudo_label(p1, p2, 0.0).item() == 1
    # 0.6 b + 0.1 (1 - b) > 0.4 b + 0.9 (1 - b)  <=>  b > 0.8
    assert losses.mixed_pseudo_label(p1, p2, 0.79).item() == 1
    assert losses.mixed_pseudo_label(p1, p2, 0.81).item() == 0


def _trainer(store: Path, out: Path, method: str, **kw):
    from train.config import TrainConfig
    from train.loop import Trainer

    cfg = TrainConfig(store=store, out=out, method=method, width=8, batch_size=2, workers=0, device="cpu",
                      progress=False, valid_split="", precision="fp32", **kw)
    return Trainer(cfg, log=lambda m: None)


def test_the_dmpls_step_supervises_both_decoders_with_the_mixed_label(small_store: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch):
    """In a real step: the label fed to the Dice loss is the argmax of beta p_main + (1 - beta) p_aux for
    the beta drawn, and the same label supervises both decoders."""
    import train.methods.dual as dual

    tr = _trainer(small_store, tmp_path / "r", "dmpls")
    seen: dict[str, list] = {"probs": [], "labels": [], "beta": []}
    real_dice, real_mix, real_rand = dual.dice_loss, dual.mixed_pseudo_label, dual.torch.rand

    def rand(*a, **k):  # torch.rand itself: record the scalar draw (beta), not augmentation's
        out = real_rand(*a, **k)
        if a == ((),):
            seen["beta"].append(out)
        return out

    def dice(p, label):
        seen["probs"].append(p.detach())
        seen["labels"].append(label)
        return real_dice(p, label)

    monkeypatch.setattr(dual, "dice_loss", dice)
    monkeypatch.setattr(dual.torch, "rand", rand)
    batch, _ = next(tr.batches())
    tr.step_fn(tr.ctx, batch)
    (p1, p2), (l1, l2), (beta,) = seen["probs"], seen["labels"], seen["beta"]
    assert torch.equal(l1, l2) and torch.equal(l1, real_mix(p1, p2, beta))
    assert not torch.equal(p1, p2)  # two decoders, two predictions
    assert tr.nets.raw_model.aux_decoder is not None


def test_the_ustm_teacher_is_the_ema_of_the_student(small_store: Path, tmp_path: Path):
    tr = _trainer(small_store, tmp_path / "r", "ustm", ustm_ema_decay=0.9, ustm_passes=2)
    student, teacher = tr.nets.raw_model, tr.nets.teacher
    assert all(not p.requires_grad for p in teacher.parameters())
    it = tr.batches()
    for step in range(4):
        before = [p.clone() for p in teacher.parameters()]
        tr.ctx.step = step
        tr.step_fn(tr.ctx, next(it)[0])
        a = min(1 - 1 / (step + 1), 0.9)  # the true mean first (step 0: the student itself), then 0.9
        for t, t0, s in zip(teacher.parameters(), before, student.parameters(), strict=True):
            torch.testing.assert_close(t, a * t0 + (1 - a) * s, rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(t, s) for t, s in zip(teacher.parameters(), student.parameters(), strict=True))


def test_ustm_uncertainty_is_the_entropy_of_the_teachers_mean():
    from train.methods.ustm import teacher_uncertainty

    class Sure(torch.nn.Module):
        def forward(self, x):
            return type("Out", (), {"logits": torch.cat([x * 0 + 50, x * 0], dim=1)})

    class Unsure(torch.nn.Module):
        def forward(self, x):
            return type("Out", (), {"logits": torch.zeros(x.shape[0], 4, *x.shape[2:])})

    x = torch.randn(3, 1, 8, 8)
    assert teacher_uncertainty(Sure(), x, 8, 0.1).max().item() < 1e-3
    assert teacher_uncertainty(Unsure(), x, 8, 0.1).min().item() == pytest.approx(math.log(4), rel=1e-4)
    assert teacher_uncertainty(Unsure(), x, 4, 0.1).shape == (3, 1, 8, 8)


# -- through the CLI -----------------------------------------------------------------------------------
@pytest.mark.parametrize("method", NEW)
def test_each_scribble_method_trains_and_its_checkpoint_evaluates(small_store: Path, tmp_path: Path, method: str):
    run = tmp_path / "run"
    r = invoke("run", "--store", small_store, "--out", run, "--method", method, "--max-steps", 2, *FAST,
               "--eval-every", 2)
    assert r.exit_code == 0, r.output
    ms = [x for x in rows(run) if "loss/total" in x]
    assert len(ms) == 2 and all(np.isfinite(v) for x in ms for k, v in x.items() if k.startswith("loss/"))
    extra = {"em": "loss/entropy", "tv": "loss/tv", "gatedcrf": "loss/crf", "mumford_shah": "loss/ms",
             "ustm": "loss/consistency", "dmpls": "loss/pseudo", "dmsps": "loss/pseudo"}[method]
    assert extra in ms[0]
    ck = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ck["method"] == method and ck["disc"] is None
    assert (ck["teacher"] is not None) == (method == "ustm")
    assert ck["model_config"]["aux_decoder"] == (method in ("dmpls", "dmsps"))
    assert any(k.startswith("aux_decoder.") for k in ck["model"]) == (method in ("dmpls", "dmsps"))
    r = invoke("eval", "--run", run, "--split", "valid")
    assert r.exit_code == 0 and "dice" in r.output, r.output


@pytest.mark.parametrize("method", ["ustm", "dmpls"])
def test_resume_is_exact_with_a_teacher_and_two_decoders(small_store: Path, tmp_path: Path, method: str):
    common = ["--store", small_store, "--method", method, "--ckpt-every", 2, "--valid-split", "", *FAST]
    if method == "ustm":
        common += ["--ustm-passes", 2, "--ustm-weight", 0]  # its ramp spans --max-steps, which differs here
    a, b = tmp_path / "a", tmp_path / "b"
    assert invoke("run", *common, "--out", a, "--max-steps", 4).exit_code == 0
    assert invoke("run", *common, "--out", b, "--max-steps", 2).exit_code == 0
    r = invoke("run", "--out", b, "--resume", "--max-steps", 4)
    assert r.exit_code == 0, r.output
    ca = torch.load(a / "checkpoints" / "last.pt", weights_only=True)
    cb = torch.load(b / "checkpoints" / "last.pt", weights_only=True)
    for part in ("model", "teacher") if method == "ustm" else ("model",):
        for k, v in ca[part].items():
            assert torch.equal(v, cb[part][k]), f"{part}.{k} differs after resume"
    assert [x["loss/total"] for x in rows(a)] == [x["loss/total"] for x in rows(b) if "loss/total" in x]


def test_method_options_are_validated_named_and_saved(small_store: Path, tmp_path: Path):
    run = tmp_path / "r"
    r = invoke("run", "--store", small_store, "--out", run, "--method", "gatedcrf", "--crf-radius", 0, *FAST)
    assert r.exit_code == 1 and "--crf-radius: must be greater than or equal to 1 (got 0)" in r.output, r.output
    assert "Value error" not in r.output and not run.exists()
    r = invoke("run", "--store", small_store, "--out", run, "--method", "em", "--tv-weight", 0.5, *FAST)
    assert r.exit_code == 1 and "--tv-weight: is an option of method 'tv'; this run's method is 'em'" in r.output
    r = invoke("run", "--store", small_store, "--out", run, "--method", "em", "--em-weight", 0.3, "--max-steps", 1,
               "--valid-split", "", *FAST)
    assert r.exit_code == 0, r.output
    saved = (run / "config.toml").read_text()
    assert "em_weight = 0.3" in saved and "tv_weight" not in saved and "adv_weight" not in saved
    r = invoke("run", "--store", small_store, "--out", tmp_path / "u", "--method", "maag", "--network", "unet",
               *FAST)
    assert r.exit_code == 1 and "--network: method 'maag' reads the attention gates" in r.output, r.output


def test_the_plain_unet_is_a_network_choice_recorded_in_the_checkpoint(small_store: Path, tmp_path: Path):
    run = tmp_path / "r"
    r = invoke("run", "--store", small_store, "--out", run, "--method", "pce", "--network", "unet",
               "--max-steps", 1, "--valid-split", "", *FAST)
    assert r.exit_code == 0, r.output
    ck = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ck["model_config"]["network"] == "unet" and not any(".gate." in k for k in ck["model"])
    r = invoke("eval", "--run", run, "--split", "valid")
    assert r.exit_code == 0, r.output
