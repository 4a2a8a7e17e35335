"""train/methods: the registry (a registered method is all the loop needs), every method training a
few steps through the CLI, and what defines each method's step (MAAG's gradients, the DMPLS mixed
label, the USTM teacher, ShapePU's transform, class ratios and negative loss)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from datakit.errors import DatakitError  # noqa: E402
from tests.train.helpers import FAST, invoke, rows, trainer  # noqa: E402
from train import methods  # noqa: E402

NEW = ["em", "tv", "gatedcrf", "mumford_shah", "ustm", "dmpls", "dmsps", "shapepu"]


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


@pytest.mark.parametrize("method", NEW)
def test_each_scribble_method_trains_and_its_checkpoint_evaluates(small_store: Path, tmp_path: Path, method: str):
    run = tmp_path / "run"
    r = invoke("run", "--store", small_store, "--out", run, "--method", method, "--max-steps", 2, *FAST,
               "--eval-every", 2)
    assert r.exit_code == 0, r.output
    ms = [x for x in rows(run) if "loss/total" in x]
    assert len(ms) == 2 and all(np.isfinite(v) for x in ms for k, v in x.items() if k.startswith("loss/"))
    extra = {"em": "loss/entropy", "tv": "loss/tv", "gatedcrf": "loss/crf", "mumford_shah": "loss/ms",
             "ustm": "loss/consistency", "dmpls": "loss/pseudo", "dmsps": "loss/pseudo", "shapepu": "loss/pu"}[method]
    assert extra in ms[0]
    ck = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ck["method"] == method and ck["disc"] is None
    assert (ck["teacher"] is not None) == (method == "ustm")
    assert ck["model_config"]["aux_decoder"] == (method in ("dmpls", "dmsps"))
    assert any(k.startswith("aux_decoder.") for k in ck["model"]) == (method in ("dmpls", "dmsps"))
    r = invoke("eval", "--run", run, "--split", "valid")
    assert r.exit_code == 0 and "dice" in r.output, r.output


def test_the_segmentor_step_leaves_the_discriminator_gradients_alone(small_store: Path, tmp_path: Path):
    """No D weight gradient is computed in the G step: D's grads after the iteration are the D step's."""
    tr = trainer(small_store, tmp_path / "r", method="maag", precision="fp32")
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


def _maag_step_grads(store: Path, out: Path, adv_weight: float) -> tuple[dict, torch.Tensor]:
    """One maag train_step from the same weights and batch; returns the logged losses and the
    segmentor's gradient (flattened)."""
    # fp32: the linearity checks below are exact only without bf16 rounding
    tr = trainer(store, out, method="maag", augment=False, instance_noise=0.0, label_flip=0.0, adv_weight=adv_weight,
                 precision="fp32", valid_split="valid")
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


def test_the_dmpls_step_supervises_both_decoders_with_the_mixed_label(small_store: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch):
    """In a real step: the label fed to the Dice loss is the argmax of beta p_main + (1 - beta) p_aux for
    the beta drawn, and the same label supervises both decoders."""
    import train.methods.dual as dual

    tr = trainer(small_store, tmp_path / "r", method="dmpls", precision="fp32")
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
    tr = trainer(small_store, tmp_path / "r", method="ustm", precision="fp32", ustm_ema_decay=0.9, ustm_passes=2)
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


# -- ShapePU --------------------------------------------------------------------------------------------
def test_shapepu_transform_is_undone_by_its_inverse():
    from train.augment import warp_image
    from train.methods.shapepu import flip_rotate

    torch.manual_seed(0)
    fwd, back = flip_rotate(64, torch.device("cpu"), (32, 48))
    eye = torch.eye(2).expand(64, 2, 2)
    torch.testing.assert_close(fwd[:, :, :2] @ back[:, :, :2], eye, atol=1e-5, rtol=0)
    assert fwd[:, 0, 0].std() > 0.3  # random angles
    dets = torch.linalg.det(fwd[:, :, :2])  # pixel-space rotations keep areas: det 1, a single flip -1
    assert {round(float(d), 4) for d in dets} == {-1.0, 1.0}
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 48), indexing="ij")
    img = torch.exp(-4 * (xx ** 2 + yy ** 2))[None, None].expand(64, 1, 32, 48).contiguous()
    round_trip = warp_image(warp_image(img, fwd), back)
    centre = (xx ** 2 + yy ** 2) < 0.25  # inside the disc every rotation keeps in view
    assert (round_trip - img)[:, 0][:, centre].abs().max() < 0.05


def test_shapepu_em_recovers_the_unlabelled_mixture():
    """Scores of a classifier trained at 50/50 on unlabelled pixels that are 90/10: EM finds 0.9/0.1."""
    from train.methods.shapepu import class_priors

    g = torch.Generator().manual_seed(0)
    n = 40000
    truth = (torch.rand(n, generator=g) < 0.1).long()  # 10 % class 1
    x = torch.randn(n, generator=g) + torch.where(truth == 1, 1.0, -1.0)
    p1 = torch.sigmoid(2 * x)  # the posterior at equal priors for N(-1, 1) vs N(1, 1)
    probs = torch.stack([1 - p1, p1]).T.reshape(1, n, 1, 2).permute(0, 3, 1, 2)  # (1, 2, n, 1)
    prior = class_priors(probs, torch.ones(1, n, 1, dtype=torch.bool), torch.tensor([0.5, 0.5]))
    assert prior[1].item() == pytest.approx(0.1, abs=0.01) and prior.sum().item() == pytest.approx(1.0)


def test_shapepu_negative_loss_excludes_the_least_likely_share_of_each_class():
    from train.methods.shapepu import pu_negative_loss

    g = torch.Generator().manual_seed(1)
    probs = torch.softmax(torch.randn(2, 3, 20, 20, generator=g), dim=1).requires_grad_()
    unlabelled = torch.ones(2, 20, 20, dtype=torch.bool)
    unlabelled[:, :2] = False  # labelled rows are never excluded
    ratios = torch.tensor([0.6, 0.25, 0.5])
    loss = pu_negative_loss(probs, unlabelled, ratios)
    ex = torch.zeros_like(probs, dtype=torch.bool)  # the definition, written out: "not c" below a quantile
    for c, r in ((1, 0.25), (2, 0.5)):
        ex[:, c] = (probs[:, c] < torch.quantile(probs[:, c][unlabelled], 1 - r)) & unlabelled
    n = int(unlabelled.sum())
    assert ex[:, 1].sum().item() == pytest.approx(0.75 * n, abs=2) and ex[:, 2].sum().item() == pytest.approx(
        0.5 * n, abs=2)
    assert not ex[:, :, :2].any()  # labelled pixels, and the background class, are never excluded
    allowed = (probs * ~ex).sum(1)
    flagged = ex.any(1)
    torch.testing.assert_close(loss, -(torch.log(allowed + 1e-12) * flagged).sum() / flagged.sum())
    loss.backward()  # it pushes probability away from the excluded classes only
    assert probs.grad is not None and probs.grad.abs().sum() > 0


def test_the_scribble_loss_is_weighted_as_each_methods_authors_have_it(small_store: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch):
    """auto: MAAG's class weights for maag and pce, uniform for the methods of WSL4MIS / PyMIC; the option
    sets it for any method, and a step's partial CE follows it."""
    import train.methods.context as context

    expected = {"maag": True, "pce": True, "em": False, "dmpls": False, "shapepu": False}
    for method, weighted in expected.items():
        tr = trainer(small_store, tmp_path / method, method=method)
        assert tr.ctx.scribble_weighted is weighted, method
        tr.close()
    tr = trainer(small_store, tmp_path / "em-batch", method="em", scribble_weights="batch")
    assert tr.ctx.scribble_weighted is True
    seen = []
    real = context.partial_ce

    def spy(*a, **k):
        seen.append(k.get("weighted"))
        return real(*a, **k)

    monkeypatch.setattr(context, "partial_ce", spy)
    tr.step_fn(tr.ctx, next(tr.batches())[0])
    assert seen == [True]
    tr.close()
    tr = trainer(small_store, tmp_path / "pce-none", method="pce", scribble_weights="none")
    tr.step_fn(tr.ctx, next(tr.batches())[0])
    assert seen == [True, False]
    tr.close()


def test_a_method_declares_batch_or_uniform_scribble_weights():
    """Anything but 'batch' would otherwise mean uniform without a word: register refuses it."""
    from train.methods import Method, register

    bad = Method("typo", "a method whose authors' weighting is misspelt", {"scribble": "scribble"},
                 "train.methods.streams:pick_scribble", "train.methods.supervised:step_pce", scribble_weights="Batch")
    with pytest.raises(ValueError, match="method 'typo': scribble_weights 'Batch' is not 'batch' nor 'none'"):
        register(bad)
