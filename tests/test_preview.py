"""`datakit preview`: a PNG montage, chosen samples reproducible by seed, bad input refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from datakit.cli import app
from datakit.preview import overlay, pick, to_rgb
from datakit.store import Store

runner = CliRunner()


def test_preview_writes_a_montage(acdc_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "preview.png"
    r = runner.invoke(app, ["preview", str(acdc_store), "--out", str(out), "--n", "4", "--split", "train"])
    assert r.exit_code == 0, r.output
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > 1000 and im.height > 400
        colours = np.asarray(im.convert("RGB")).reshape(-1, 3)
    # the class colours of the overlays are in the picture (LV green of the legend and the scribbles)
    assert (np.abs(colours.astype(int) - (44, 160, 44)).sum(axis=1) < 30).any()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preview.png"]  # no temporary file left


def test_preview_refuses_existing_output_and_bad_input(acdc_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.png"
    out.write_bytes(b"old")
    r = runner.invoke(app, ["preview", str(acdc_store), "--out", str(out), "--n", "1"])
    assert r.exit_code == 1 and "already exists" in r.output and out.read_bytes() == b"old"
    r = runner.invoke(app, ["preview", str(acdc_store), "--out", str(tmp_path / "q.png"), "--split", "nope"])
    assert r.exit_code == 1 and "no split 'nope'" in r.output
    r = runner.invoke(app, ["preview", str(acdc_store), "--out", str(tmp_path / "q.jpg")])
    assert r.exit_code == 1 and "q.jpg" in r.output and ".png" in r.output
    r = runner.invoke(app, ["preview", str(acdc_store), "--out", str(tmp_path / "missing" / "q.png")])
    assert r.exit_code == 1 and "does not exist" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png"]


def test_pick_is_reproducible_and_stays_in_the_split(acdc_store: Path) -> None:
    with Store(acdc_store) as s:
        a, b, c = pick(s, "valid", 5, 0), pick(s, "valid", 5, 0), pick(s, "valid", 5, 1)
        assert np.array_equal(a, b) and not np.array_equal(a, c)
        assert set(a) <= set(s.splits["valid"].tolist())
        assert len(pick(s, "valid", 10_000, 0)) == len(s.splits["valid"])


def test_overlay_colours_classes_and_leaves_unknown_alone() -> None:
    rgb = to_rgb(np.linspace(0, 1, 16, dtype=np.float32).reshape(1, 4, 4))
    assert rgb.shape == (4, 4, 3) and rgb.min() >= 0 and rgb.max() <= 1
    labels = np.array([[0, 1, 255, 3]] * 4, np.uint8)
    out = overlay(rgb, labels, 1.0, background=False)
    assert np.array_equal(out[:, [0, 2]], rgb[:, [0, 2]])  # background and unknown: the image
    assert not np.array_equal(out[:, 1], rgb[:, 1])
    assert not np.array_equal(overlay(rgb, labels, 1.0, background=True)[:, 0], rgb[:, 0])


def test_to_rgb_keeps_colour_images() -> None:
    img = np.stack([np.full((8, 8), v, np.float32) for v in (0.0, 1.0, 2.0)])
    img[:, 0, 0] = (5.0, -5.0, 0.0)
    rgb = to_rgb(img)
    assert rgb.shape == (8, 8, 3) and rgb.min() >= 0 and rgb.max() <= 1
    assert rgb[4, 4, 0] < rgb[4, 4, 1] < rgb[4, 4, 2]  # channel order kept
