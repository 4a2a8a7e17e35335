"""Spline-to-mask rendering speed of Unity labels at 256 x 256, on one core.

    .venv/bin/python benchmarks/render_unity.py [--frames 2000]

Renders the labels of phantom frames (8 curves: 4 filled chambers, 2 'between' myocardium
regions; 6 keypoints) with :func:`datakit.sources.unity.splines.render_labels`, the work the converter does per
frame besides reading the PNG. Prints frames/s per CPU second, its ratio to the 500 frames/s
target, and, in the same run on the same core, our spline against scipy's CubicSpline and our
scan-line fill against skimage.draw.polygon.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: no BLAS threads either
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

TARGET = 500.0  # frames/s: the target of docs/benchmarks.md


def scipy_spline(x: np.ndarray, y: np.ndarray, per_pixel: float = 1.25, max_length: float = float("inf"),
                 **_: object) -> np.ndarray:
    """The reference: scipy's natural CubicSpline by chord length, sampled as spline_points does
    (the phantoms' curves are all well formed: the checks and straight pieces are not needed)."""
    from scipy.interpolate import CubicSpline

    pts = np.column_stack([x, y])
    t = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])
    n = max(int(np.ceil(t[-1] * per_pixel)) + 1, len(pts))
    return CubicSpline(t, pts, bc_type="natural")(np.linspace(0.0, t[-1], n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=2000, help="frames rendered per timing")
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    from skimage.draw import polygon as sk_polygon

    from datakit.sources.unity.classes import load_class_map
    from datakit.sources.unity.splines import PixelTransform, fill_polygon, render_labels, spline_points
    from datakit.synth.unity import write_unity_phantoms

    with tempfile.TemporaryDirectory() as tmp:
        write_unity_phantoms(Path(tmp) / "u", videos=4, frames=5, seed=0, shape=(480, 640))
        entries = list(json.loads((Path(tmp) / "u" / "labels-all.json").read_text()).values())
    cmap = load_class_map()
    shape = (args.size, args.size)
    scale = args.size / 640
    tf = PixelTransform(scale, ((args.size - round(480 * scale)) // 2, 0))
    for e in entries:  # warm-up (imports, caches)
        render_labels(e, cmap, shape, tf)

    # CPU time of this process (pinned to one core): on a shared machine wall time also counts the
    # time other processes held the core; both are printed
    w0, c0 = time.perf_counter(), time.process_time()
    for i in range(args.frames):
        render_labels(entries[i % len(entries)], cmap, shape, tf)
    rate = args.frames / (time.process_time() - c0)
    wall_rate = args.frames / (time.perf_counter() - w0)

    # the same rendering with scipy's spline and skimage's fill swapped in (same run, same core)
    import datakit.sources.unity.splines as splines_mod

    def sk_fill(mask: np.ndarray, x: np.ndarray, y: np.ndarray, value: int) -> None:
        rr, cc = sk_polygon(y, x, mask.shape)
        mask[rr, cc] = value

    ours_fns = splines_mod.spline_points, splines_mod.fill_polygon
    splines_mod.spline_points, splines_mod.fill_polygon = scipy_spline, sk_fill
    try:
        n_ref = max(1, args.frames // 10)
        render_labels(entries[0], cmap, shape, tf)
        c0 = time.process_time()
        for i in range(n_ref):
            render_labels(entries[i % len(entries)], cmap, shape, tf)
        ref_rate = n_ref / (time.process_time() - c0)
    finally:
        splines_mod.spline_points, splines_mod.fill_polygon = ours_fns

    # the fill alone, ours vs skimage's point-in-polygon, on the chamber polygons of the frames
    polys, curves = [], []
    for e in entries:
        for name in ("curve-lv-endo", "curve-la-endo", "curve-rv-endo"):
            inst = e["labels"][name]
            inst = inst[0] if isinstance(inst, list) else inst
            if inst["type"] == "curve":
                x, y = tf.apply(np.array(inst["x"].split(), float), np.array(inst["y"].split(), float))
                polys.append(spline_points(x, y))
                curves.append((x, y))
    reps = max(1, args.frames // 10)
    for p in curves:  # warm-up: scipy.interpolate's import is not part of a curve's cost
        scipy_spline(*p)
        sk_polygon(p[1], p[0], shape)
    t0 = time.process_time()
    for i in range(reps):
        p = curves[i % len(curves)]
        spline_points(*p)
    ours_spline = (time.process_time() - t0) / reps
    t0 = time.process_time()
    for i in range(reps):
        p = curves[i % len(curves)]
        scipy_spline(*p)
    scipy_spline_s = (time.process_time() - t0) / reps

    mask = np.zeros(shape, np.uint8)
    t0 = time.process_time()
    for i in range(reps):
        p = polys[i % len(polys)]
        fill_polygon(mask, p[:, 0], p[:, 1], 1)
    ours = (time.process_time() - t0) / reps
    t0 = time.process_time()
    for i in range(reps):
        p = polys[i % len(polys)]
        rr, cc = sk_polygon(p[:, 1], p[:, 0], shape)
        mask[rr, cc] = 1
    theirs = (time.process_time() - t0) / reps

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"render_labels at {args.size}x{args.size}, one core: {rate:.0f} frames/s of CPU time "
          f"({rate / TARGET:.1f}x the {TARGET:.0f} frames/s target; {args.frames} frames; "
          f"wall clock {wall_rate:.0f} frames/s at load average {load:.1f})")
    print(f"with scipy CubicSpline + skimage.draw.polygon instead: {ref_rate:.0f} frames/s "
          f"(ours {rate / ref_rate:.1f}x faster)")
    print(f"spline: ours {ours_spline * 1e6:.0f} us vs scipy CubicSpline {scipy_spline_s * 1e6:.0f} us per curve "
          f"({scipy_spline_s / ours_spline:.1f}x faster, same points)")
    print(f"polygon fill: scan line {ours * 1e6:.0f} us vs skimage.draw.polygon {theirs * 1e6:.0f} us "
          f"per chamber ({theirs / ours:.1f}x faster, {np.mean([len(p) for p in polys]):.0f} vertices)")


if __name__ == "__main__":
    main()
