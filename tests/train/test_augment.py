"""train/augment.py: warps keep label values and fill what comes from outside; rotations of non-square
images do not shear."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from train.augment import augment_masks, augment_pair, random_affine, rotation_theta, warp_labels  # noqa: E402


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
