"""Unity labels to masks and keypoints: the pure functions of datakit.sources.unity.splines and the class manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.interpolate import CubicSpline

from datakit.errors import DatakitError
from datakit.sources.unity.classes import load_class_map
from datakit.sources.unity.splines import (
    PixelTransform,
    draw_line,
    fill_polygon,
    natural_spline,
    render_labels,
    spline_points,
)

CMAP = load_class_map()
LV, MYO, LA, RV, RA = (CMAP.classes.index(c) for c in ("LV", "MYO", "LA", "RV", "RA"))


def coords(x, y) -> dict[str, str]:
    return {"x": " ".join(f"{v:.3f}" for v in np.atleast_1d(x)), "y": " ".join(f"{v:.3f}" for v in np.atleast_1d(y))}


def arc(cx: float, cy: float, r: float, deg: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Control points on a circle from -deg to +deg, angle 0 at the top (the apex)."""
    t = np.deg2rad(np.linspace(-deg, deg, n))
    return cx + r * np.sin(t), cy - r * np.cos(t)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_natural_spline_matches_scipy_natural_cubicspline() -> None:
    rng = np.random.default_rng(0)
    for n in (3, 4, 7, 25):
        t = np.concatenate([[0.0], np.cumsum(rng.uniform(0.5, 20, n - 1))])
        pts = rng.uniform(0, 200, (n, 2))
        ts = np.linspace(0, t[-1], 301)
        ours = natural_spline(t, pts[:, 0] + 1j * pts[:, 1], ts)
        ref = CubicSpline(t, pts, bc_type="natural")(ts)
        np.testing.assert_allclose(np.column_stack([ours.real, ours.imag]), ref, atol=1e-9)


def test_spline_samples_every_pixel_and_passes_through_control_points() -> None:
    x, y = arc(128, 128, 80, 150, 9)
    pts = spline_points(x, y)
    steps = np.hypot(*np.diff(pts, axis=0).T)
    assert steps.max() < 1.0  # >= 1 sample per output pixel of curve
    for px, py in zip(x, y, strict=True):
        assert np.hypot(pts[:, 0] - px, pts[:, 1] - py).min() < 0.5
    # a spline through points on a circle stays on it (natural ends straighten the end intervals)
    dev = np.abs(np.hypot(pts[:, 0] - 128, pts[:, 1] - 128) - 80)
    n = len(pts)
    assert dev[n // 8: -n // 8].max() < 0.5 and dev.max() < 2.0


def test_filled_curve_matches_analytic_shape() -> None:
    # LV-like curve: hinge -> apex -> hinge on a circle, closed along the chord between the hinges
    cx, cy, r = 120.0, 110.0, 60.0
    x, y = arc(cx, cy, r, 140, 10)
    entry = {"labels": {"curve-lv-endo": {"type": "curve", **coords(x, y)}}}
    out = render_labels(entry, CMAP, (256, 256))
    yy, xx = np.mgrid[:256, :256]
    chord_y = cy - r * np.cos(np.deg2rad(140))
    truth = ((xx - cx) ** 2 + (yy - cy) ** 2 <= r**2) & (yy <= chord_y)
    assert iou(out.mask == LV, truth) > 0.95
    assert set(np.unique(out.mask)) == {0, LV}
    assert out.label_state[LV] == 1 and out.label_state[0] == 1


def test_fill_polygon_centre_rule_is_exact_on_a_rectangle() -> None:
    mask = np.zeros((40, 40), np.uint8)
    # pixel centres 10..19 (rows) x 5..24 (cols) lie inside; edges between centres
    fill_polygon(mask, np.array([4.5, 24.5, 24.5, 4.5]), np.array([9.5, 9.5, 19.5, 19.5]), 3)
    expected = np.zeros_like(mask)
    expected[10:20, 5:25] = 3
    np.testing.assert_array_equal(mask, expected)
    # partly outside the image: clipped, no wrap-around
    mask[:] = 0
    fill_polygon(mask, np.array([-10.0, 10.2, 10.2, -10.0]), np.array([-5.0, -5.0, 4.6, 4.6]), 1)
    assert mask.sum() == 5 * 11 and mask[:5, :11].all()


def test_between_fills_the_wall_and_line_draws_a_band(tmp_path: Path) -> None:
    cx, cy = 128.0, 128.0
    ex, ey = arc(cx, cy, 50, 120, 8)
    ox, oy = arc(cx, cy, 60, 120, 8)
    entry = {"labels": {"curve-lv-post-endo": {"type": "curve", **coords(ex, ey)},
                        "curve-lv-post-epi": {"type": "curve", **coords(ox[::-1], oy[::-1])}}}
    out = render_labels(entry, CMAP, (256, 256))
    yy, xx = np.mgrid[:256, :256]
    rad = np.hypot(xx - cx, yy - cy)
    ang = np.degrees(np.arctan2(xx - cx, cy - yy))
    truth = (rad >= 50) & (rad <= 60) & (np.abs(ang) <= 120)
    assert iou(out.mask == MYO, truth) > 0.85  # the closing segments cut the ends straight
    assert out.label_state[MYO] == 1

    manifest = tmp_path / "wall.json"
    manifest.write_text(json.dumps({"classes": ["background", "WALL"], "rules": [
        {"class": "WALL", "mode": "line", "curves": ["curve-lv-antsep-rv"], "thickness": 3}]}))
    wall = load_class_map(manifest)
    x = np.linspace(20, 200, 6)
    out = render_labels({"labels": {"curve-lv-antsep-rv": {"type": "curve", **coords(x, np.full(6, 100.0))}}},
                        wall, (256, 256))
    cols = (out.mask == 1).sum(axis=0)
    assert (cols[25:195] == 3).all() and cols[:15].sum() == 0
    m = np.zeros((20, 20), np.uint8)
    draw_line(m, np.array([2.0, 3.0]), np.array([5.0, 5.0]), 1, 1)
    assert m.sum() == 2


def test_both_json_variants_render_the_same() -> None:
    x, y = arc(100, 100, 40, 150, 8)
    single = {"labels": {"curve-la-endo": {"type": "curve", **coords(x, y)},
                         "mv-ant-hinge": {"type": "point", "x": "10", "y": "20"}}}
    listed = {"labels": {k: [v] for k, v in single["labels"].items()}}
    a, b = render_labels(single, CMAP, (200, 200)), render_labels(listed, CMAP, (200, 200))
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    assert a.mask.max() == LA
    # two instances of one label: both drawn
    x2, y2 = arc(150, 150, 20, 150, 8)
    two = {"labels": {"curve-la-endo": [{"type": "curve", **coords(x, y)}, {"type": "curve", **coords(x2, y2)}]}}
    assert (render_labels(two, CMAP, (200, 200)).mask == LA).sum() > (a.mask == LA).sum()


def test_off_blurred_and_absent_states_and_keypoints() -> None:
    x, y = arc(100, 100, 40, 150, 8)
    empty = {"x": "", "y": ""}
    entry = {"labels": {
        "curve-lv-endo": {"type": "curve", **coords(x, y)},
        "curve-rv-endo": {"type": "off", **empty},
        "curve-ra-endo": {"type": "blurred", **empty},
        "mv-ant-hinge": {"type": "point", "x": "30.5", "y": "40.25"},
        "mv-post-hinge": {"type": "off", **empty},
        "lv-apex-endo": {"type": "blurred", **empty},
        "some-other-label": {"type": "point", "x": "1", "y": "1"},
    }}
    out = render_labels(entry, CMAP, (200, 200))
    assert out.label_state.tolist() == [1, 1, -1, -1, 0, -1]  # MYO, LA not annotated: unknown
    assert not (out.mask == RV).any() and not (out.mask == RA).any()
    kp = out.keypoints
    assert kp.dtype == np.float32 and kp.shape == (len(CMAP.points), 3)
    np.testing.assert_allclose(kp[0], [30.5, 40.25, 1])
    assert np.isnan(kp[1, :2]).all() and kp[1, 2] == 0
    assert np.isnan(kp[2, :2]).all() and kp[2, 2] == -1
    assert kp[5, 2] == -1  # absent from the frame: unknown
    assert out.unused == ["some-other-label"]


@pytest.mark.parametrize(("labels", "myo"), [
    ({"curve-lv-post-endo": "off"}, -1),  # its partner curve absent: the wall is not annotated
    ({"curve-lv-post-endo": "off", "curve-lv-post-epi": "off"}, -1),  # the antsep pair absent
    ({"curve-lv-post-endo": "off", "curve-lv-post-epi": "curve"}, -1),  # off beside a curve: unknown
    ({"curve-lv-post-endo": "off", "curve-lv-post-epi": "off", "curve-lv-antsep-endo": "off",
      "curve-lv-antsep-rv": "off"}, 0),  # every label that defines MYO is off
    ({"curve-lv-post-endo": "off", "curve-lv-post-epi": "off", "curve-lv-antsep-endo": "off",
      "curve-lv-antsep-rv": "blurred"}, -1),
])
def test_class_is_off_only_when_every_defining_label_is_off(labels: dict[str, str], myo: int) -> None:
    x, y = arc(100, 100, 40, 150, 8)
    entry = {"labels": {name: {"type": t, **(coords(x, y) if t == "curve" else {"x": "", "y": ""})}
                        for name, t in labels.items()}}
    entry["labels"]["curve-ra-endo"] = [{"type": "off", "x": "", "y": ""}] * 2  # every instance off
    state = render_labels(entry, CMAP, (200, 200)).label_state
    assert state[MYO] == myo and state[RA] == 0 and state[LA] == -1


def test_keypoints_follow_the_letterbox_transform() -> None:
    from datakit.geometry import letterbox

    img = np.zeros((100, 200), np.float32)
    img[25:36, 145:156] = 1.0  # a bright square centred on pixel (row 30, col 150)
    boxed, scale, offset = letterbox(img, 64, order=1, fill=0.0)
    tf = PixelTransform(scale, offset)
    entry = {"labels": {"mv-ant-hinge": {"type": "point", "x": "150", "y": "30"}}}
    kp = render_labels(entry, CMAP, (64, 64), tf).keypoints[0]
    assert scale == pytest.approx(0.32) and offset == (16, 0)
    np.testing.assert_allclose(kp, [(150.5) * 0.32 - 0.5, (30.5) * 0.32 - 0.5 + 16, 1], rtol=1e-6)
    # the keypoint sits where the image put the square: its intensity centroid in the stored grid
    rows, cols = np.mgrid[:64, :64]
    w = np.clip(boxed, 0, None)
    assert abs(kp[0] - (w * cols).sum() / w.sum()) < 0.3 and abs(kp[1] - (w * rows).sum() / w.sum()) < 0.3


@pytest.mark.parametrize(("label", "reason"), [
    ({"type": "curve", "x": "1 two 3", "y": "3 4 5"}, "non-numeric"),
    ({"type": "curve", "x": "1 2 3", "y": "3 4"}, "x has 3 values but y has 2"),
    ({"type": "spline", "x": "1 2 3", "y": "3 4 5"}, "unknown type"),
    ({"type": "curve", "x": "1 2 3"}, "'x' and 'y'"),
])
def test_malformed_curve_names_image_and_label(label: dict, reason: str) -> None:
    x, y = arc(100, 100, 40, 150, 8)
    entry = {"labels": {"curve-rv-endo": label, "curve-lv-endo": {"type": "curve", **coords(x, y)}}}
    with pytest.raises(DatakitError) as e:
        render_labels(entry, CMAP, (200, 200), image="01-abc-0001.png")
    assert "01-abc-0001.png" in str(e.value) and "curve-rv-endo" in str(e.value) and reason in str(e.value)
    out = render_labels(entry, CMAP, (200, 200), image="01-abc-0001.png", on_error="skip")
    assert out.label_state[RV] == -1 and out.label_state[LV] == 1  # the rest of the frame is kept
    assert len(out.problems) == 1 and "curve-rv-endo" in out.problems[0]


def test_bad_point_and_entry_shapes() -> None:
    with pytest.raises(DatakitError, match="one x and one y"):
        render_labels({"labels": {"mv-ant-hinge": {"type": "point", "x": "1 2", "y": "3 4"}}}, CMAP, (64, 64),
                      image="f.png")
    with pytest.raises(DatakitError, match="no 'labels' object"):
        render_labels({"label": {}}, CMAP, (64, 64), image="f.png")


@pytest.mark.parametrize(("manifest", "key"), [
    ({"classes": ["background", "LV"], "rules": [{"class": "LV", "mode": "paint", "curves": ["c"]}]},
     "rules[0].mode"),
    ({"classes": ["background", "LV"], "rules": [{"class": "RV", "mode": "fill", "curves": ["c"]}]},
     "rules[0].class"),
    ({"classes": ["background", "LV"], "rules": [{"class": "LV", "mode": "between", "curves": ["c"]}]},
     "rules[0].curves"),
    ({"classes": ["LV"], "rules": []}, "#classes"),
    ({"classes": ["background", "LV"], "rules": [{"class": "LV", "mode": "fill", "curves": ["c"]}],
      "points": "mv"}, "#points"),
])
def test_class_manifest_errors_name_file_and_key(tmp_path: Path, manifest: dict, key: str) -> None:
    path = tmp_path / "classes.json"
    path.write_text(json.dumps(manifest))
    with pytest.raises(DatakitError) as e:
        load_class_map(path)
    assert str(path) in str(e.value) and key in str(e.value)


def test_default_manifest() -> None:
    assert CMAP.classes == ["background", "LV", "MYO", "LA", "RV", "RA"]
    assert {r.mode for r in CMAP.rules} == {"fill", "between"}
    assert "curve-lv-endo" in CMAP.label_names and "mv-ant-hinge" in CMAP.points


@pytest.mark.parametrize(("label", "reason"), [
    ({"type": "curve", "x": "1 2", "y": "3 4"}, "2 distinct point(s); a spline needs at least 3"),
    ({"type": "curve", "x": "1 2 2 2", "y": "3 4 4 4"}, "2 distinct"),
    ({"type": "curve", "x": "7", "y": "9"}, "1 distinct"),
    ({"type": "curve", "x": "1 2 nan", "y": "3 4 5"}, "non-finite"),
    ({"type": "curve", "x": "1 NaN 3", "y": "3 4 5"}, "non-finite"),
    ({"type": "curve", "x": "1 2e9 3", "y": "3 4 5"}, "far larger than the image"),
])
@pytest.mark.parametrize("on_error", ["stop", "skip"])
def test_degenerate_fill_curve_is_a_finding_its_class_unknown(label: dict, reason: str, on_error: str) -> None:
    """Real exports hold 2-point and NaN curves: never an error (even with stop), the class is -1."""
    x, y = arc(100, 100, 40, 150, 8)
    entry = {"labels": {"curve-rv-endo": label, "curve-lv-endo": {"type": "curve", **coords(x, y)}}}
    out = render_labels(entry, CMAP, (200, 200), image="labels-all.json#01-abc-0001.png", on_error=on_error)
    assert out.label_state[RV] == -1 and not (out.mask == RV).any()
    assert out.label_state[LV] == 1 and out.problems == []
    assert len(out.findings) == 1
    assert out.findings[0].startswith("labels-all.json#01-abc-0001.png: label 'curve-rv-endo': ")
    assert reason in out.findings[0] and "unknown (-1)" in out.findings[0]


def test_two_point_line_curve_is_drawn_as_a_straight_segment() -> None:
    from datakit.sources.unity.classes import ClassMap, Rule

    cmap = ClassMap(["background", "WALL", "LV"], [Rule("WALL", 1, "line", ("curve-lv-antsep-rv",), 1.0),
                                                    Rule("LV", 2, "fill", ("curve-lv-endo",))], [])
    entry = {"labels": {"curve-lv-antsep-rv": {"type": "curve", "x": "10 50 50", "y": "20 20 20"},
                        "curve-lv-endo": {"type": "curve", "x": "5 9", "y": "5 9"}}}
    out = render_labels(entry, cmap, (64, 64), image="f.png")
    expected = np.zeros((64, 64), bool)
    expected[20, 10:51] = True  # the segment, one pixel wide, end points included
    assert np.array_equal(out.mask == 1, expected)
    assert list(out.label_state) == [1, 1, -1]  # the 2-point LV fill cannot be built: unknown
    assert any("'curve-lv-antsep-rv'" in f and "straight segment" in f for f in out.findings)
    assert any("'curve-lv-endo'" in f and "unknown (-1)" in f for f in out.findings)


def test_nan_point_is_unknown_and_reported() -> None:
    out = render_labels({"labels": {"mv-ant-hinge": {"type": "point", "x": "nan", "y": "3"}}}, CMAP, (64, 64),
                        image="f.png")
    assert out.keypoints[0, 2] == -1 and np.isnan(out.keypoints[0, :2]).all()
    assert len(out.findings) == 1 and "'mv-ant-hinge'" in out.findings[0] and "non-finite" in out.findings[0]


def test_straight_segment_flags_replace_spline_pieces_by_chords() -> None:
    x = np.array([10.0, 40.0, 70.0, 100.0])
    y = np.array([50.0, 10.0, 50.0, 10.0])
    curved = spline_points(x, y)
    flags = np.array([0, 1, 0, 0])  # the piece from point 1 to point 2 is straight
    mixed = spline_points(x, y, straight=flags)
    on_chord = np.abs((mixed[:, 0] - 40) * 40 - (mixed[:, 1] - 10) * 30) / 50  # distance to line p1-p2
    middle = (mixed[:, 0] > 40.5) & (mixed[:, 0] < 69.5)
    assert on_chord[middle].max() < 1e-9  # exactly the chord there
    assert np.abs(curved[middle] - mixed[middle]).max() > 1.0  # the spline itself bulges off it
    outside = (mixed[:, 0] < 39) | (mixed[:, 0] > 71)
    np.testing.assert_allclose(mixed[outside], curved[outside])  # the other pieces are the spline's


def test_straight_segment_is_honoured_when_drawing_or_reported_as_ignored() -> None:
    from datakit.sources.unity.classes import ClassMap, Rule

    cmap = ClassMap(["background", "WALL"], [Rule("WALL", 1, "line", ("w",), 1.0)], [])
    base = {"type": "curve", "x": "10 30 50 70", "y": "40 10 40 10"}
    plain = render_labels({"labels": {"w": base}}, cmap, (64, 80))
    straight = render_labels({"labels": {"w": {**base, "straight_segment": "1 1 1 0"}}}, cmap, (64, 80))
    assert straight.findings == straight.ignored == [] and not np.array_equal(plain.mask, straight.mask)
    poly = np.zeros((64, 80), np.uint8)
    draw_line(poly, *spline_points(np.array([10., 30, 50, 70]), np.array([40., 10, 40, 10]),
                                   straight=np.ones(4)).T, 1, 1.0)
    assert np.array_equal(straight.mask, poly)  # a polyline through the control points
    bad = render_labels({"labels": {"w": {**base, "straight_segment": "1 0"}}}, cmap, (64, 80), image="f.png")
    assert np.array_equal(bad.mask, plain.mask)
    assert bad.ignored == ["f.png: label 'w': straight_segment ignored (it has 2 value(s) for 4 control points)"]
    assert bad.findings == []


def test_off_as_unknown_turns_off_states_and_keypoints_to_unknown() -> None:
    entry = {"labels": {"curve-ra-endo": {"type": "off", "x": "", "y": ""},
                        "mv-ant-hinge": {"type": "off", "x": "", "y": ""}}}
    absent = render_labels(entry, CMAP, (64, 64))
    unknown = render_labels(entry, CMAP, (64, 64), off_as="unknown")
    assert absent.label_state[RA] == 0 and absent.keypoints[0, 2] == 0
    assert unknown.label_state[RA] == -1 and unknown.keypoints[0, 2] == -1
    assert np.array_equal(absent.mask, unknown.mask)
    with pytest.raises(DatakitError, match="--off-as"):
        render_labels(entry, CMAP, (64, 64), off_as="maybe")
