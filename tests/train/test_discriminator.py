"""train/discriminator.py: MAAG's multi-scale discriminator (structure, cost, spectral norm, instance
noise) and the real masks' scales it reads."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from train.discriminator import MultiScaleDiscriminator, fake_scales, real_scales  # noqa: E402
from train.model import AttentionUNet  # noqa: E402


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
