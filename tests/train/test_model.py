"""train/model.py: the attention UNet's shapes, gates and widths as the authors built them; the plain UNet
chosen by --network and recorded in the checkpoint."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from tests.train.helpers import FAST, invoke  # noqa: E402
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


def test_the_plain_unet_is_a_network_choice_recorded_in_the_checkpoint(small_store: Path, tmp_path: Path):
    run = tmp_path / "r"
    r = invoke("run", "--store", small_store, "--out", run, "--method", "pce", "--network", "unet",
               "--max-steps", 1, "--valid-split", "", *FAST)
    assert r.exit_code == 0, r.output
    ck = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ck["model_config"]["network"] == "unet" and not any(".gate." in k for k in ck["model"])
    r = invoke("eval", "--run", run, "--split", "valid")
    assert r.exit_code == 0, r.output
