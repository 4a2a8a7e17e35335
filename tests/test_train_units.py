"""The train package's blocks on hand-made inputs: shapes, losses, augmentation, metrics, config."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from datakit.errors import DatakitError  # noqa: E402
from train.augment import augment_masks, augment_pair, random_affine, rotation_theta, warp_labels  # noqa: E402
from train.config import load_toml, resolve, to_toml  # noqa: E402
from train.discriminator import MultiScaleDiscriminator, fake_scales, real_scales  # noqa: E402
from train.losses import (  # noqa: E402
    class_weights,
    dynamic_weighting,
    ignore_unknown_classes,
    lsgan_d,
    lsgan_g,
    partial_ce,
)
from train.metrics import dice, hd95, volume_scores  # noqa: E402
from train.model import AttentionUNet  # noqa: E402


def test_unet_shapes_and_gates_in_all_four_blocks():
    torch.manual_seed(0)
    m = AttentionUNet(in_channels=1, classes=4, width=8)
    out = m(torch.randn(2, 1, 64, 64))
    assert out.logits.shape == (2, 4, 64, 64)
    assert [tuple(g.shape) for g in out.gates] == [(2, 4, 8, 8), (2, 4, 16, 16), (2, 4, 32, 32), (2, 4, 64, 64)]
    for g in out.gates:  # softmax segmentations
        assert torch.allclose(g.sum(1), torch.ones(2, g.shape[2], g.shape[3]), atol=1e-5)
    # the discriminator's extra inputs: 1/2, 1/4, 1/8 (the full-resolution gate only gates)
    assert [g.shape[-1] for g in out.multiscale] == [32, 16, 8]
    with pytest.raises(ValueError, match="multiple of 16"):
        m(torch.randn(1, 1, 40, 40))


def test_each_gate_comes_from_conv2_and_multiplies_the_block_output():
    """The authors' order: gate = foreground of softmax(1x1 conv(conv2)); output = conv3 x gate."""
    torch.manual_seed(0)
    m = AttentionUNet(1, 4, width=8).eval()
    seen: dict[str, list] = {"conv2": [], "gate_in": [], "conv3": [], "out": []}
    for b in m.decoder:
        b.conv2.register_forward_hook(lambda mod, i, o: seen["conv2"].append(o))
        b.gate.register_forward_pre_hook(lambda mod, i: seen["gate_in"].append(i[0]))
        b.conv3.register_forward_hook(lambda mod, i, o: seen["conv3"].append(o))
        b.register_forward_hook(lambda mod, i, o: seen["out"].append(o))
    out = m(torch.randn(1, 1, 64, 64))
    assert len(seen["out"]) == 4
    for c2, gin, c3, (y, seg), g in zip(seen["conv2"], seen["gate_in"], seen["conv3"], seen["out"], out.gates,
                                        strict=True):
        assert gin is c2  # the gate reads conv2, not conv3
        assert torch.equal(seg, g)
        assert torch.allclose(y, c3 * seg[:, 1:].sum(1, keepdim=True), atol=1e-6)


def test_unet_widths_follow_maag():
    m = AttentionUNet(1, 4, width=32)
    enc = [b.convs[1][0].out_channels for b in m.encoder]
    assert enc == [32, 64, 128, 256]
    assert m.bottleneck[1][0].out_channels == 512 and m.bottleneck[0][0].kernel_size == (1, 1)
    assert [b.conv3[0].out_channels for b in m.decoder] == [256, 128, 64, 32]
    assert [b.gate.to_classes.out_channels for b in m.decoder] == [4, 4, 4, 4]
    # He init: conv weights have std close to sqrt(2 / fan_in)
    w = m.encoder[1].convs[0][0].weight
    assert abs(float(w.detach().std()) - math.sqrt(2 / (32 * 9))) < 0.01


def test_discriminator_scores_one_per_image_and_uses_spectral_norm():
    d = MultiScaleDiscriminator(channels=3, image_size=(64, 64), width=8)
    mask = torch.randint(0, 4, (2, 64, 64))
    real = real_scales(mask, 4)
    assert [tuple(r.shape) for r in real] == [(2, 3, 64, 64), (2, 3, 32, 32), (2, 3, 16, 16), (2, 3, 8, 8)]
    assert torch.equal(real[0][:, 2], (mask == 3).float())
    assert d(real).shape == (2,)
    names = [n for n, _ in d.named_parameters()]
    assert sum("parametrizations.weight" in n for n in names) == 3  # the three 4x4 level convs
    assert not any(n.startswith("dense.parametrizations") for n in names)  # the head is a plain dense layer
    seg = AttentionUNet(1, 4, 8)(torch.randn(2, 1, 64, 64))
    fake = fake_scales(torch.softmax(seg.logits, 1), seg.multiscale)
    assert [f.shape[-1] for f in fake] == [64, 32, 16, 8]
    assert d(fake).shape == (2,)
    with pytest.raises(ValueError, match="built for"):
        d(real_scales(torch.zeros(1, 32, 32, dtype=torch.long), 4))


def test_discriminator_matches_the_authors_structure():
    """Squeeze to 13 channels + the raw scale (13 + K - 1 into each spectral-normed conv; 128 / 256 /
    512 filters, strides 2, 2, 1) and one dense weight per position of the whole final map."""
    d = MultiScaleDiscriminator(channels=3, image_size=(224, 224), width=32)
    assert [s.out_channels for s in d.squeeze] == [13, 13, 13]
    assert [s.in_channels for s in d.squeeze] == [32, 128, 256]
    convs = [lvl[1] for lvl in d.levels]
    assert [(c.in_channels, c.out_channels, c.stride) for c in convs] == [(16, 128, (2, 2)), (16, 256, (2, 2)),
                                                                           (16, 512, (1, 1))]
    assert d.dense.in_features == 512 * 28 * 28 and d.dense.out_features == 1


def test_discriminator_costs_what_the_authors_costs():
    """About 0.55 GFLOP forward per 224 x 224 sample (the old design: 5.1)."""
    from torch.utils.flop_counter import FlopCounterMode

    d = MultiScaleDiscriminator(channels=3, image_size=(224, 224), width=32).eval()
    x = [torch.rand(1, 3, 224 // 2 ** k, 224 // 2 ** k) for k in range(4)]
    with FlopCounterMode(display=False) as fc:
        d(x)
    assert 0.45e9 < fc.get_total_flops() < 0.65e9


def test_discriminator_score_depends_on_where_a_shape_is():
    """The dense head gives each position its own weight: the same blob moved scores differently
    (a 1x1 conv averaged over space scored both the same)."""
    torch.manual_seed(0)
    d = MultiScaleDiscriminator(channels=3, image_size=(64, 64), width=8).eval()
    a = torch.zeros(1, 64, 64, dtype=torch.long)
    a[0, 8:24, 8:24] = 3
    b = torch.roll(a, shifts=(32, 32), dims=(1, 2))
    with torch.no_grad():
        sa, sb = d(real_scales(a, 4)), d(real_scales(b, 4))
    assert float((sa - sb).abs()) > 1e-3 * max(float(sa.abs()), float(sb.abs()), 1e-6)
    with torch.no_grad():
        assert torch.equal(d(real_scales(a, 4)), sa)  # eval: no noise, the same input scores the same


def test_instance_noise_on_the_full_scale_only():
    """In training, noise is added to the 224-px input alone; each level sees its raw scale exactly."""
    torch.manual_seed(0)
    d = MultiScaleDiscriminator(channels=3, image_size=(64, 64), width=8, instance_noise=0.2).train()
    scales = real_scales(torch.randint(0, 4, (2, 64, 64)), 4)
    level0_in, level_in = [], []
    d.level0.register_forward_pre_hook(lambda m, i: level0_in.append(i[0]))
    for lvl in d.levels:
        lvl.register_forward_pre_hook(lambda m, i: level_in.append(i[0]))
    d(scales)
    noise = level0_in[0] - scales[0]
    assert 0.15 < float(noise.std()) < 0.25
    for x, s in zip(level_in, scales[1:], strict=True):
        assert torch.equal(x[:, 13:], s)  # the raw maps after the 13 squeezed channels, noise-free
    level0_in.clear()
    d.eval()(scales)
    assert torch.equal(level0_in[0], scales[0])


def test_real_scales_zero_where_unknown():
    mask = torch.full((1, 16, 16), 255)
    mask[0, :8] = 2
    r = real_scales(mask, 4)[0]
    assert r[0, 1, :8].eq(1).all() and r[0, :, 8:].eq(0).all()


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


def test_augmentation_keeps_label_values_and_fills_outside():
    torch.manual_seed(0)
    img = torch.randn(4, 1, 32, 32)
    lab = torch.randint(0, 4, (4, 32, 32), dtype=torch.uint8)
    out, (lab2,) = augment_pair(img, [(lab, 255)])
    assert out.shape == img.shape and lab2.dtype == torch.uint8
    assert set(lab2.unique().tolist()) <= {0, 1, 2, 3, 255}
    masks = augment_masks(lab)
    assert set(masks.unique().tolist()) <= {0, 1, 2, 3}
    # identity warp leaves labels untouched; a 90-degree rotation moves a known corner
    eye = torch.tensor([[[1.0, 0, 0], [0, 1, 0]]])
    assert torch.equal(warp_labels(lab[:1], eye, 255), lab[:1])
    rot = torch.tensor([[[0.0, -1, 0], [1, 0, 0]]])
    r = warp_labels(lab[:1], rot, 255)
    assert torch.equal(r[0], torch.rot90(lab[0], 1, (0, 1))) or torch.equal(r[0], torch.rot90(lab[0], -1, (0, 1)))


def test_rotation_of_a_non_square_image_does_not_shear():
    """H 32 x W 64: a 90-degree rotation about the centre maps an 8 x 4 block to a 4 x 8 block of the
    same area, each pixel where the pixel-space rotation puts it."""
    h, w = 32, 64
    lab = torch.zeros(1, h, w, dtype=torch.uint8)
    rows, cols = slice(10, 18), slice(30, 34)  # 8 rows x 4 columns, off-centre in both axes
    lab[0, rows, cols] = 1
    lab[0, 12, 31] = 2  # a known pixel
    theta = rotation_theta(torch.tensor([math.pi / 2]), torch.zeros(1, 2), (h, w))
    out = warp_labels(lab, theta, 255)[0]
    assert int((out == 1).sum() + (out == 2).sum()) == 32  # area kept
    ys, xs = torch.nonzero((out == 1) | (out == 2), as_tuple=True)  # 4 x 8, not 2 x 16 as sheared
    assert int(ys.max() - ys.min() + 1) == 4 and int(xs.max() - xs.min() + 1) == 8
    # output pixel (Y, X) samples input pixel at R(angle) applied to its offset from the centre
    cy, cx = (h - 1) / 2, (w - 1) / 2
    matches = [(int(y), int(x)) for y, x in torch.nonzero(out == 2)]
    assert len(matches) == 1
    y, x = matches[0]
    dy, dx = y - cy, x - cx
    # x_in = cos dx - sin dy = -dy, y_in = sin dx + cos dy = dx (pixel units, angle pi/2)
    assert (round(cy + dx), round(cx - dy)) == (12, 31)
    # random_affine uses the same pixel-space rotation for the size it is given
    torch.manual_seed(0)
    t = random_affine(1000, torch.device("cpu"), size=(h, w))
    assert torch.allclose(t[:, 0, 1] * w / h, -t[:, 1, 0] * h / w, atol=1e-6)  # -sin = -sin


def test_dice_and_hd95_on_known_shapes():
    a = np.zeros((1, 20, 20), bool)
    b = np.zeros((1, 20, 20), bool)
    a[0, 5:10, 5:10] = True
    b[0, 5:10, 7:12] = True  # shifted 2 columns
    assert dice(a, b) == pytest.approx(2 * 15 / 50)
    # border distances are 0 or 2 columns; more than 5 % are 2 -> HD95 = 2 columns x 1.5 mm
    assert hd95(a, b, (10.0, 1.0, 1.5)) == pytest.approx(3.0)
    assert math.isnan(dice(np.zeros(3, bool), np.zeros(3, bool)))
    assert math.isnan(hd95(a, np.zeros_like(b), (1.0, 1.0, 1.0)))
    pred = np.zeros((2, 8, 8), np.uint8)
    ref = np.full((2, 8, 8), 255, np.uint8)
    ref[:, :4] = 1
    pred[:, :4] = 1
    pred[:, 4:] = 2  # predictions where the reference is unknown do not count
    s = volume_scores(pred, ref, (5.0, 1.0, 1.0), ["bg", "a", "b"])
    assert s["dice"]["a"] == 1.0 and math.isnan(s["dice"]["b"]) and s["hd95_mm"]["a"] == 0.0


def test_config_toml_round_trip_and_errors(tmp_path: Path):
    f = tmp_path / "c.toml"
    f.write_text('store = "s.h5"\nout = "runs/x"\nmethod = "pce"\nmax_steps = 7\n')
    cfg = resolve(load_toml(f), {"max_steps": 9, "lr": None}, str(f))
    assert cfg.method == "pce" and cfg.max_steps == 9 and cfg.lr == 1e-4
    again = tmp_path / "again.toml"
    again.write_text(to_toml(cfg))
    assert resolve(load_toml(again), {}) == cfg
    f.write_text('store = "s.h5"\nbatchsize = 3\n')
    with pytest.raises(DatakitError, match="unknown key 'batchsize'") as e:
        load_toml(f)
    assert str(f) in str(e.value)
    with pytest.raises(DatakitError, match="method") as e:
        resolve({"store": "s", "out": "o"}, {"method": "gan"})
    assert "unknown method 'gan'; known methods: maag, pce, full" in str(e.value)
    f.write_text("store = [\n")
    with pytest.raises(DatakitError, match="not valid TOML"):
        load_toml(f)




@pytest.mark.parametrize("size", [64, 224])  # centre crop, centre pad
def test_prediction_goes_back_to_the_source_grid(size: int):
    from datakit.geometry import SliceGrid
    from train.predict_io import source_index, to_source_grid

    src = np.zeros((150, 170, 3), np.uint8)
    src[40:110, 50:120] = 1
    src[60:90, 70:100] = 2
    src[:, :, 2] = 3 * (src[:, :, 2] > 0)
    spacing, target = (1.3, 1.7), 1.51
    grid = SliceGrid(src.shape[:2], spacing, target, (size, size))
    stored = np.transpose(grid.labels(src, 0), (2, 0, 1))  # (Z, H, W) as the store keeps slices
    back = to_source_grid(stored, src.shape[:2], spacing, (target, target))
    assert back.shape == src.shape
    ri = source_index(150, 1.3, target, size)
    ci = source_index(170, 1.7, target, size)
    inside = (ri >= 0)[:, None] & (ci >= 0)[None, :]
    agree = (back == src)[inside].mean()
    assert agree > 0.97  # nearest there and back: only boundary pixels may move
    assert (back[~inside] == 0).all()
    if size == 224:
        assert inside.all()


def test_source_grid_inversion_matches_real_acdc_ground_truth(tmp_path: Path):
    """Stored masks of two real ACDC patients, put back on the source grid, equal the _gt files."""
    import nibabel as nib

    from datakit.pipeline import ConvertOptions, convert
    from datakit.sources.acdc import AcdcSource
    from datakit.store import Store
    from tests.conftest import shared_data
    from train.metrics import volumes
    from train.predict_io import to_source_grid

    training = shared_data("acdc") / "training"
    pick = tmp_path / "pick"
    pick.mkdir()
    for name in ("patient001", "patient018"):
        (pick / name).symlink_to(training / name)
    out = tmp_path / "two.h5"
    convert(AcdcSource(pick, scribbles="none"), ConvertOptions(out=out, workers=1, progress=False, split="random"),
            log=lambda m: None)
    s = Store(out)
    for v in volumes(s, np.arange(len(s))):
        first = int(v.indices[0])
        stored = np.stack([s.file["masks"][int(i)] for i in v.indices])
        back = to_source_grid(stored, tuple(s.meta["source_shape"][first]), tuple(s.meta["source_spacing"][first]),
                              tuple(s.meta["spacing"][first]))
        gt_file = pick / v.patient / Path(s.meta["source"][first]).name.replace(".nii.gz", "_gt.nii.gz")
        gt = np.asarray(nib.load(gt_file).dataobj)
        assert back.shape == gt.shape
        fg = (gt > 0) | (back > 0)
        assert (back == gt)[fg].mean() > 0.97, (v.patient, v.frame)


def _names_store(path: Path, rows: list[tuple[str, str, int]]) -> Path:
    """A 16 x 16 store, one sample per (dataset, patient, slice) row; every image is filled with its
    row number (mod 4), so a model predicting that value tells the samples' predictions apart."""
    from datakit.sample import Sample, label_state_from_mask
    from datakit.store import StoreWriter

    with StoreWriter(path, classes=["bg", "a", "b", "c"], image_size=(16, 16)) as wr:
        for i, (dataset, patient, sl) in enumerate(rows):
            m = np.full((16, 16), i % 4, np.uint8)
            wr.append([Sample(image=np.full((1, 16, 16), i % 4, np.float32), mask=m,
                              scribble=np.full((16, 16), 255, np.uint8), label_state=label_state_from_mask(m, 4),
                              dataset=dataset, patient=patient, frame="ED", slice=sl, spacing=(1.0, 1.0),
                              slice_spacing=5.0 if sl >= 0 else math.nan)])
        wr.set_patients({"id": sorted({p for _, p, _ in rows})})
        wr.set_splits({"train": list(range(len(rows)))}, method="random", seed=0, ratios=[1.0])
    return path


class _Echo(torch.nn.Module):
    """Predicts each pixel's image value as its class."""

    def forward(self, x):
        logits = torch.nn.functional.one_hot(x[:, 0].round().long(), 4).permute(0, 3, 1, 2).float()
        return type("Out", (), {"logits": logits})


@pytest.mark.parametrize("fmt", ["nifti", "png"])
def test_predictions_sharing_patient_frame_view_get_their_own_files(tmp_path: Path, fmt: str):
    """2D samples of one patient (each a volume of its own) and the volumes of two datasets of a merged
    store with the same patient ids: one file each, none overwriting another, ``written`` = files."""
    import nibabel as nib
    from PIL import Image

    from datakit.store import Store
    from train.predict_io import write_predictions

    rows = [("toy", "p0", -1), ("toy", "p0", -1), ("toy", "p0", -1),  # 2D: three volumes of one sample
            ("a", "p1", 0), ("a", "p1", 1), ("b", "p1", 0), ("b", "p1", 1)]  # 3D: two volumes, one name
    s = Store(_names_store(tmp_path / "s.h5", rows))
    out = tmp_path / "pred"
    n, _ = write_predictions(_Echo(), s, np.arange(len(s)), torch.device("cpu"), out, fmt, "stored")
    got = {f.name: sorted(np.unique(np.asarray(nib.load(f).dataobj if fmt == "nifti" else Image.open(f))).tolist())
           for f in out.iterdir()}
    assert n == len(got)
    if fmt == "png":  # one file per slice; 2D names as before: the sample index
        assert got == {"p0_ED_000000.png": [0], "p0_ED_000001.png": [1], "p0_ED_000002.png": [2],
                       "p1_ED_s00.png": [3], "p1_ED_s01.png": [0], "p1_ED-2_s00.png": [1], "p1_ED-2_s01.png": [2]}
    else:  # one file per volume, holding that volume's predictions
        assert got == {"p0_ED_000000_pred.nii.gz": [0], "p0_ED_000001_pred.nii.gz": [1],
                       "p0_ED_000002_pred.nii.gz": [2], "p1_ED_pred.nii.gz": [0, 3], "p1_ED-2_pred.nii.gz": [1, 2]}
