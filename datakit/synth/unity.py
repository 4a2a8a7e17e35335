"""Unity Imaging phantoms in the exact Unity layout, for the demo and the tests.

``png-cache/<class>/<h1>/<h2>/<class>-<64 hex>-<frame>.png`` (8-bit grey, one video in RGB, class
02 for the last video), ``labels-all.json`` and its split into ``labels-train.json`` /
``labels-tune.json`` / ``labels-ival.json`` with a ``.txt`` list of image names each. Even videos
use the dict-per-label JSON variant, odd ones the list-of-instances variant. An apical
four-chamber-like heart in an echo sector: LV (apex up) with its walls, LA below it, RV and RA
beside them; the LV contracts over the frames. Some labels are ``off`` (the RA of every third video,
absent from its image too) or ``blurred`` (the RV on the first frame of some videos, the epicardial
apex on odd frames).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from datakit.errors import DatakitError
from datakit.synth import check_output_folder


def _ellipse(cx: float, cy: float, a: float, b: float, t: np.ndarray, up: bool) -> tuple[np.ndarray, np.ndarray]:
    """Points at angles ``t`` (0 = the apex, up or down) of an ellipse with semi-axes a (x), b (y)."""
    sign = -1.0 if up else 1.0
    return cx + a * np.sin(t), cy + sign * b * np.cos(t)


def _coords(x: np.ndarray, y: np.ndarray) -> dict[str, str]:
    return {"x": " ".join(f"{v:.2f}" for v in np.atleast_1d(x)), "y": " ".join(f"{v:.2f}" for v in np.atleast_1d(y))}


def _heart(shape: tuple[int, int], rng: np.random.Generator, squeeze: float, has_ra: bool,
           jitter: tuple[float, float]) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    """Labels (curves and points, in PNG pixels) and the filled regions used to paint the image."""
    h, w = shape
    cx, cy = w * 0.56 + jitter[0], h * 0.40 + jitter[1]
    a, b, wall = w * 0.085 * squeeze, h * 0.26 * (0.5 + 0.5 * squeeze), w * 0.03
    gap = np.deg2rad(150)  # the mitral opening: the LV curve runs hinge -> apex -> hinge
    chamber = np.linspace(-gap, gap, 11)
    labels: dict[str, dict[str, Any]] = {}
    labels["curve-lv-endo"] = {"type": "curve", **_coords(*_ellipse(cx, cy, a, b, chamber, True))}
    side = np.linspace(np.deg2rad(40), np.deg2rad(140), 6)
    labels["curve-lv-post-endo"] = {"type": "curve", **_coords(*_ellipse(cx, cy, a, b, side, True))}
    labels["curve-lv-post-epi"] = {"type": "curve", **_coords(*_ellipse(cx, cy, a + wall, b + wall, side, True))}
    labels["curve-lv-antsep-endo"] = {"type": "curve", **_coords(*_ellipse(cx, cy, a, b, -side, True))}
    labels["curve-lv-antsep-rv"] = {"type": "curve",
                                    **_coords(*_ellipse(cx, cy, a + wall, b + wall, -side, True))}
    hx, hy = _ellipse(cx, cy, a, b, np.array([-gap, gap]), True)
    labels["mv-ant-hinge"] = {"type": "point", **_coords(hx[0], hy[0])}
    labels["mv-post-hinge"] = {"type": "point", **_coords(hx[1], hy[1])}
    labels["lv-apex-endo"] = {"type": "point", **_coords(cx, cy - b)}
    labels["lv-apex-epi"] = {"type": "point", **_coords(cx, cy - b - wall)}
    tx, ty = _ellipse(cx, cy, a + wall, b + wall, np.array([-np.deg2rad(140), np.deg2rad(140)]), True)
    labels["lv-ivs-top"] = {"type": "point", **_coords(tx[0], ty[0])}
    labels["lv-pw-bottom"] = {"type": "point", **_coords(tx[1], ty[1])}
    # atria below the valves (open towards them), RV beside the septum
    la = (cx, cy + b * np.cos(np.pi - gap) + h * 0.13, a * 1.05, h * 0.12)
    labels["curve-la-endo"] = {"type": "curve", **_coords(*_ellipse(*la, np.linspace(-gap, gap, 9), False))}
    rv = (cx - a - 2 * wall - w * 0.07, cy + h * 0.04, w * 0.065, h * 0.2)
    labels["curve-rv-endo"] = {"type": "curve", **_coords(*_ellipse(*rv, chamber, True))}
    ra = (rv[0], la[1], rv[2], h * 0.11)
    labels["curve-ra-endo"] = ({"type": "curve", **_coords(*_ellipse(*ra, np.linspace(-gap, gap, 9), False))}
                               if has_ra else {"type": "off", "x": "", "y": ""})
    yy, xx = np.mgrid[:h, :w].astype(np.float32)

    def inside(cx_: float, cy_: float, a_: float, b_: float) -> np.ndarray:
        return ((xx - cx_) / a_) ** 2 + ((yy - cy_) / b_) ** 2 <= 1

    regions = {"myo": inside(cx, cy, a + wall, b + wall), "lv": inside(cx, cy, a, b), "la": inside(*la),
               "rv": inside(*rv), "ra": inside(*ra) if has_ra else np.zeros(shape, bool)}
    return labels, regions


def _image(shape: tuple[int, int], regions: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Echo-like 8-bit frame: a sector of speckled tissue, dark blood pools, bright myocardium."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    apex = (w / 2, 4.0)
    angle = np.arctan2(xx - apex[0], yy - apex[1])
    depth = np.hypot(xx - apex[0], yy - apex[1])
    sector = (np.abs(angle) < np.deg2rad(42)) & (depth < h * 0.97)
    level = np.full(shape, 70.0, np.float32)
    level[regions["myo"]] = 150.0
    for chamber in ("lv", "la", "rv", "ra"):
        level[regions[chamber]] = 15.0
    speckle = ndimage.gaussian_filter(rng.rayleigh(1.0, shape).astype(np.float32), 1.0) / 1.25
    img = level * speckle * (1.0 - 0.35 * depth / h)
    return np.clip(np.where(sector, img, 0.0), 0, 255).astype(np.uint8)


def write_unity_phantoms(out: str | Path, videos: int = 6, frames: int = 3, seed: int = 0,
                         overwrite: bool = False, shape: tuple[int, int] = (240, 320)) -> list[Path]:
    """Write ``videos`` phantom videos of ``frames`` labelled frames; returns the PNG paths."""
    from PIL import Image

    out = Path(out)
    check_output_folder(out, overwrite)
    if videos < 1 or frames < 1:
        raise DatakitError(f"need at least one video and one frame, not {videos} x {frames}")
    rng = np.random.default_rng(seed)
    split_of = {v: "train" for v in range(videos)}
    if videos >= 3:
        split_of[videos - 1], split_of[videos - 2] = "ival", "tune"
    labels: dict[str, dict[str, dict[str, Any]]] = {}
    by_split: dict[str, dict[str, Any]] = {"train": {}, "tune": {}, "ival": {}}
    paths = []
    for v in range(videos):
        code = rng.bytes(32).hex()
        cls = "02" if videos >= 2 and v == videos - 1 else "01"
        jitter = (float(rng.uniform(-8, 8)), float(rng.uniform(-6, 6)))
        start = int(rng.integers(0, 40))
        for t in range(frames):
            squeeze = 1.0 - 0.25 * np.sin(np.pi * t / max(frames, 2))  # systole shrinks the LV
            lab, regions = _heart(shape, rng, squeeze, has_ra=v % 3 != 1, jitter=jitter)
            if v % 3 == 2 and t == 0:
                lab["curve-rv-endo"] = {"type": "blurred", "x": "", "y": ""}
            if t % 2 == 1:
                lab["lv-apex-epi"] = {"type": "blurred", "x": "", "y": ""}
            entry = {"labels": {k: [val] for k, val in lab.items()} if v % 2 else lab}
            name = f"{cls}-{code}-{start + t:04d}.png"
            path = out / "png-cache" / cls / code[:2] / code[2:4] / name
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = _image(shape, regions, rng)
            im = Image.fromarray(np.stack([pixels] * 3, -1)) if v % 3 == 2 else Image.fromarray(pixels)
            im.save(path)
            paths.append(path)
            labels[name] = entry
            by_split[split_of[v]][name] = entry
    out.mkdir(parents=True, exist_ok=True)
    (out / "labels-all.json").write_text(json.dumps(labels, indent=1))
    (out / "labels-all.txt").write_text("".join(f"{n}\n" for n in labels))
    for split, entries in by_split.items():
        (out / f"labels-{split}.json").write_text(json.dumps(entries, indent=1))
        (out / f"labels-{split}.txt").write_text("".join(f"{n}\n" for n in entries))
    return paths
