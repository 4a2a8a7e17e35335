"""`datakit preview`: a PNG montage, chosen samples reproducible by seed, bad input refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from datakit.cli import app
from datakit.errors import DatakitError
from datakit.preview import overlay, pick, to_rgb, write_preview
from datakit.store import Store

runner = CliRunner()
LV = (43, 161, 43)  # class 3's colour (0.17, 0.63, 0.17) in 8 bits


def _panels(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int, int]]:
    """Record the pixel boxes (top, bottom, left, right) of the montage's panels, in drawing order,
    when the figure is saved (its layout is final then)."""
    from matplotlib.figure import Figure

    boxes: list[tuple[int, int, int, int]] = []
    save = Figure.savefig

    def savefig(fig: Figure, *args: object, **kwargs: object) -> None:
        save(fig, *args, **kwargs)
        height = fig.get_figheight() * fig.dpi
        for ax in fig.axes:
            x0, y0, x1, y1 = ax.get_window_extent().extents
            boxes.append((int(height - y1) + 2, int(height - y0) - 2, int(x0) + 2, int(x1) - 2))  # inside the frame

    monkeypatch.setattr(Figure, "savefig", savefig)
    return boxes


def test_preview_writes_a_montage(acdc_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "preview.png"
    boxes = _panels(monkeypatch)
    r = runner.invoke(app, ["preview", str(acdc_store), "--out", str(out), "--n", "4", "--split", "train"])
    assert r.exit_code == 0, r.output
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > 1000 and im.height > 400
        picture = np.asarray(im.convert("RGB")).astype(int)
        colours = picture.reshape(-1, 3)
    # the class colours of the overlays are in the picture (LV green of the legend and the scribbles)
    assert (np.abs(colours - (44, 160, 44)).sum(axis=1) < 30).any()
    # ... and inside the panels, not only in the legend: 4 samples x (image, mask, scribble)
    assert len(boxes) == 12
    for j, (top, bottom, left, right) in enumerate(boxes):
        panel = picture[top:bottom, left:right].reshape(-1, 3)
        assert len(panel) > 150 * 150, (j, panel.shape)
        red, green, blue = panel.T
        greenish = ((green - red > 25) & (green - blue > 25)).sum()  # LV (and MYO/RV tints) over the grey image
        exact_lv = (np.abs(panel - LV).sum(axis=1) < 6).sum()
        if j % 3 == 0:  # the image alone: grey
            assert greenish == 0 and exact_lv == 0, j
        elif j % 3 == 1:  # the mask at 45 %: LV tinted green, never the pure colour
            assert greenish > 100 and exact_lv == 0, j
        else:  # the scribble, opaque: pure LV green strokes
            assert exact_lv > 5, j
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
    assert r.exit_code == 1 and "does not exist" in r.output and f"{tmp_path / 'missing'}:" in r.output
    r = runner.invoke(app, ["preview", str(acdc_store), "--out", str(out), "--n", "0"])
    assert r.exit_code == 2 and out.read_bytes() == b"old"  # --n below its minimum: a usage error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png"]


def test_preview_of_a_missing_store(tmp_path: Path) -> None:
    missing = tmp_path / "gone.h5"
    r = runner.invoke(app, ["preview", str(missing), "--out", str(tmp_path / "p.png")])
    assert r.exit_code == 1 and f"error: {missing}: no such store file" in r.output
    assert isinstance(r.exception, SystemExit) and "Traceback" not in r.output
    assert list(tmp_path.iterdir()) == []


def test_write_preview_from_python(acdc_store: Path, tmp_path: Path) -> None:
    """The library call (``train predict --preview`` uses it) replaces an existing file unless told not to,
    and refuses what the CLI's options cannot express."""
    out = tmp_path / "p.png"
    out.write_bytes(b"old")
    with pytest.raises(DatakitError, match="already exists"):
        write_preview(acdc_store, out, n=1, overwrite=False)
    assert out.read_bytes() == b"old"
    assert write_preview(acdc_store, out, n=1) == out and out.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(DatakitError, match="at least 1, not 0"):
        write_preview(acdc_store, tmp_path / "q.png", n=0)
    with pytest.raises(DatakitError, match="is a directory"):
        write_preview(acdc_store, tmp_path, n=1)
    with pytest.raises(DatakitError, match="output folder does not exist") as e:
        write_preview(acdc_store, tmp_path / "missing" / "q.png", n=1)
    assert e.value.where == str(tmp_path / "missing")
    with pytest.raises(DatakitError, match="is not a folder") as e:
        write_preview(acdc_store, out / "q.png", n=1)
    assert e.value.where == str(out)
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


def test_concurrent_runs_never_share_a_temporary(acdc_store: Path, tmp_path: Path) -> None:
    """Each run writes through its own uniquely named temporary: another run's, here at the fixed name
    preview once used for every run, is neither overwritten nor renamed away."""
    out = tmp_path / "p.png"
    other = tmp_path / ".p.png.tmp.png"
    other.write_bytes(b"another run's half-written PNG")
    r = runner.invoke(app, ["preview", str(acdc_store), "--out", str(out), "--n", "1"])
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:4] == b"\x89PNG" and other.read_bytes() == b"another run's half-written PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".p.png.tmp.png", "p.png"]  # none of its own left


def test_a_failed_render_keeps_the_previous_png(acdc_store: Path, tmp_path: Path, savefig_full_disk: None) -> None:
    out = tmp_path / "p.png"
    out.write_bytes(b"previous")
    r = runner.invoke(app, ["preview", str(acdc_store), "--out", str(out), "--n", "1", "--overwrite"])
    assert r.exit_code == 1 and f"error: {out}: no space left on device" in r.output
    assert out.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["p.png"]
