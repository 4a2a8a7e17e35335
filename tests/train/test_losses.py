"""train/losses.py on hand-made inputs: partial cross-entropy and its class weights, unknown classes,
LSGAN and MAAG's dynamic weighting, and the terms of the other scribble methods (entropy, total
variation, gated CRF, Mumford-Shah, Dice, soft CE, the DMPLS pseudo label)."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from train import losses  # noqa: E402
from train.losses import (  # noqa: E402
    class_weights,
    dynamic_weighting,
    ignore_unknown_classes,
    lsgan_d,
    lsgan_g,
    partial_ce,
)


def test_partial_ce_ignores_unlabelled_pixels():
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 0] = 5.0  # confident background everywhere
    target = torch.full((1, 2, 2), 255)
    assert float(partial_ce(logits, target)) == 0.0  # nothing labelled: zero, not NaN
    target[0, 0, 0] = 0
    assert float(partial_ce(logits, target)) == pytest.approx(math.log(1 + math.exp(-5)), rel=1e-5)
    target[0, 1, 1] = 1
    # class-weighted: both classes count equally (one pixel each), so the mean of their two CEs
    expected = 0.5 * (math.log(1 + math.exp(-5)) + math.log(1 + math.exp(5)))
    assert float(partial_ce(logits, target)) == pytest.approx(expected, rel=1e-5)


def test_partial_ce_equals_torchs_weighted_mean_without_asking_the_device():
    """The sync-free form (index_add_ counts, a summed-weight denominator) is torch's weighted mean."""
    from torch.nn import functional as F

    torch.manual_seed(0)
    logits = torch.randn(3, 4, 16, 16, requires_grad=True)
    target = torch.randint(0, 4, (3, 16, 16))
    target[torch.rand(3, 16, 16) < 0.7] = 255
    for weighted in (True, False):
        w = class_weights(target, 4) if weighted else None
        want = F.cross_entropy(logits, target, weight=w, ignore_index=255)
        got = partial_ce(logits, target, weighted=weighted).detach()
        assert float(got) == pytest.approx(float(want.detach()), rel=1e-5)
    none = partial_ce(logits, torch.full((3, 16, 16), 255))
    none.backward()  # nothing labelled: a zero loss that still has a gradient path
    assert float(none.detach()) == 0.0 and float(logits.grad.abs().sum()) == 0.0


def test_class_weights_are_inverse_frequency():
    t = torch.tensor([[0, 0, 0, 1, 255, 255]])
    w = class_weights(t, 3)
    assert w[0] == pytest.approx(4 / 3) and w[1] == pytest.approx(4.0)
    assert w[2] > 1e5  # absent class: huge weight but no pixel uses it


def test_unknown_classes_become_ignored():
    t = torch.tensor([[[0, 1, 2, 255]], [[0, 1, 2, 3]]])
    ls = torch.tensor([[1, -1, 1, 0], [1, 1, -1, -1]], dtype=torch.int8)
    out = ignore_unknown_classes(t, ls)
    assert out.tolist() == [[[0, 255, 2, 255]], [[0, 1, 255, 255]]]


def test_lsgan_losses_on_hand_made_scores():
    real, fake = torch.tensor([1.0, 1.0]), torch.tensor([-1.0, -1.0])
    assert float(lsgan_d(real, fake)) == 0.0  # perfect discriminator
    assert float(lsgan_d(fake, real)) == pytest.approx(4.0)  # 0.5*4 + 0.5*4
    assert float(lsgan_g(torch.tensor([1.0]))) == 0.0
    assert float(lsgan_g(torch.tensor([-1.0]))) == pytest.approx(2.0)
    torch.manual_seed(0)
    # label noise flips a whole batch's targets at once (the authors' per-call coin): each call costs
    # 0 (no flip), 2 (real or fake batch flipped) or 4 (both); on average 0.1 x 2 + 0.1 x 2 = 0.4
    losses = [float(lsgan_d(real.repeat(50), fake.repeat(50), flip_p=0.1)) for _ in range(3000)]
    assert set(np.round(losses, 5)) <= {0.0, 2.0, 4.0}
    assert 0.3 < float(np.mean(losses)) < 0.5
    assert float(lsgan_d(real, fake, flip_p=1.0)) == pytest.approx(4.0)


def test_dynamic_weighting_equalises_magnitudes_without_gradient_through_weight():
    ce = torch.tensor(4.0, requires_grad=True)
    g = torch.tensor(0.5, requires_grad=True)
    total, w = dynamic_weighting(ce, g, 0.2)
    assert float(w) == pytest.approx(0.125, rel=1e-5)  # |g / ce|, the adversarial weight not in it
    assert float((w * ce).detach()) == pytest.approx(float(g.detach()), rel=1e-5)
    assert float(total.detach()) == pytest.approx(0.5 + 0.2 * 0.5, rel=1e-5)
    total.backward()
    assert float(ce.grad) == pytest.approx(0.125, rel=1e-5) and float(g.grad) == pytest.approx(0.2)


def test_adv_weight_sets_the_adversarial_share_not_the_loss_scale():
    """total = w ce + a g: the gradient is linear in a, and a = 0 still trains the scribble loss."""
    grads = {}
    for a in (0.0, 0.2, 1.0):
        ce = torch.tensor(4.0, requires_grad=True)
        g = torch.tensor(0.5, requires_grad=True)
        total, _ = dynamic_weighting(ce, g, a)
        total.backward()
        grads[a] = (float(ce.grad), float(g.grad))
    assert grads[0.0] == pytest.approx((0.125, 0.0))  # scribble loss still has its gradient
    assert grads[0.2] == pytest.approx((0.125, 0.2)) and grads[1.0] == pytest.approx((0.125, 1.0))


def test_unknown_class_logits_get_no_gradient():
    """Class 2 is -1 in sample 0 and has no pixel there (it sits in the background, as in merged
    stores): its logit must get no gradient in that sample, but does in sample 1 where it is known."""
    torch.manual_seed(0)
    for weighted in (True, False):
        logits = torch.randn(2, 4, 6, 6, requires_grad=True)
        target = torch.full((2, 6, 6), 255)
        target[:, 0] = 0
        target[:, 1] = 1
        target[:, 2] = 3
        target[1, 3] = 2
        ls = torch.tensor([[1, 1, -1, 1], [1, 1, 1, 1]], dtype=torch.int8)
        loss = partial_ce(logits, target, weighted=weighted, label_state=ls)
        assert torch.isfinite(loss)
        loss.backward()
        assert logits.grad[0, 2].abs().max() == 0
        assert logits.grad[0, [0, 1, 3]].abs().amax() > 0 and logits.grad[1, 2].abs().amax() > 0
    # pixels labelled with the unknown class are still ignored (255 handling kept)
    logits = torch.zeros(1, 3, 1, 2, requires_grad=True)
    ls = torch.tensor([[1, 1, -1]], dtype=torch.int8)
    only_c = partial_ce(logits, torch.tensor([[[2, 2]]]), label_state=ls)
    assert float(only_c.detach()) == 0.0
    mixed = partial_ce(logits, torch.tensor([[[0, 2]]]), label_state=ls)
    assert float(mixed.detach()) == pytest.approx(math.log(2), rel=1e-5)  # class 0 vs 1 only: log 2


def _probs(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits, dim=1)


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
