"""Unity Imaging labels to masks and keypoints: one labels entry in, arrays out (no I/O).

A curve label holds the control points of a natural cubic spline parameterised by cumulative chord
length (Unity's own convention, at least 3 points). It is sampled densely (under one output pixel
between samples) and rasterised in the output grid, by the rule that names it in the class
manifest (:mod:`datakit.sources.unity.classes`):

- ``fill``: the curve closed along the chord between its end points, filled (chambers);
- ``line``: the open curve drawn ``thickness`` output pixels wide (walls);
- ``between``: the region between two curves (e.g. myocardium between endo- and epicardium),
  the second curve walked back from the end nearest the first curve's end.

Rules paint in manifest order; a later rule overwrites an earlier one where they overlap. Pixels
are inside a polygon when their centre is (even-odd rule); pixel centres sit at integer
coordinates, x the column and y the row, as in Unity's JSON.

Degenerate labels (real exports hold some): a curve with 2 distinct points is drawn as a straight
segment by a ``line`` rule (Unity's newer code does the same); a curve that cannot be built (fewer
points than its rule needs, a non-finite coordinate, coordinates far off the image) leaves its class
unknown (-1). Either is a data-quality finding, reported in ``Rendered.findings``, never an error:
only malformed JSON (unknown type, non-numeric coordinates, x and y of different lengths) is.
A curve's optional ``straight_segment`` field (one flag per control point, like x and y: flag k
set means the piece from point k to point k + 1 is straight) replaces those pieces of the spline
by their chords; a field that cannot be read is ignored, and that is reported (``Rendered.ignored``).

Label states per class: 1 if the class has pixels in the final mask; otherwise -1 (unknown) if one
of its labels is ``blurred``, malformed or degenerate, or drawn but covered; otherwise 0 if ALL
the labels that define it (every curve of every rule of the class) are present and ``off``
(``off_as="unknown"`` makes that -1 too); otherwise -1 (the frame does not annotate it, or only
part of it: an ``off`` curve beside an absent one says nothing of the region between them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from datakit.choices import UNITY_OFF_AS
from datakit.errors import DatakitError
from datakit.sources.unity.classes import ClassMap

MIN_CURVE_POINTS = 3  # a spline; 2 points make a straight segment, drawn by "line" rules only
MIN_LINE_POINTS = 2
SEGMENT = "drawn as a straight segment"  # the finding of a 2-point line curve
OFF_READINGS = UNITY_OFF_AS  # what "off" means: known absent (Unity's own training) or unknown
SAMPLES_PER_PIXEL = 1.25  # spline samples per output pixel of chord length: gaps stay < 1 px
STATES = ("point", "curve", "off", "blurred")


@dataclass(frozen=True)
class PixelTransform:
    """Source pixel coordinates to stored ones: ``(p + 0.5) * scale - 0.5 + offset``.

    The same mapping :func:`datakit.geometry.letterbox` applies to the image.
    """

    scale: float = 1.0
    offset: tuple[float, float] = (0.0, 0.0)  # (row, col) of the content in the output

    def apply(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = self.scale
        return (x + 0.5) * s - 0.5 + self.offset[1], (y + 0.5) * s - 0.5 + self.offset[0]


@dataclass
class Rendered:
    mask: np.ndarray  # (H, W) uint8 class indices
    label_state: np.ndarray  # (K,) int8
    keypoints: np.ndarray  # (P, 3) float32: x, y, visibility
    problems: list[str] = field(default_factory=list)  # labels left out (on_error="skip")
    findings: list[str] = field(default_factory=list)  # degenerate labels: drawn as segments or unknown
    ignored: list[str] = field(default_factory=list)  # fields that could not be read and were ignored
    unused: list[str] = field(default_factory=list)  # label names no rule or point uses


class LabelProblem(Exception):
    """A malformed label; becomes a DatakitError naming image and label, or a problem line."""


class DegenerateLabel(LabelProblem):
    """A well-formed label whose geometry cannot be built (too few points, a non-finite coordinate,
    far off the image): a data-quality finding, the class becomes unknown, never an error."""


# -- parsing -------------------------------------------------------------------------------------
def _numbers(value: Any, axis: str) -> np.ndarray:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        values = [value]
    elif isinstance(value, str):
        values = value.replace(",", " ").split()
    elif isinstance(value, list):
        values = value
    else:
        raise LabelProblem(f"{axis} must be a string of numbers, not {type(value).__name__}")
    try:
        out = np.asarray(values, np.float64)
    except (TypeError, ValueError):
        raise LabelProblem(f"{axis} holds a non-numeric coordinate: {str(value)[:60]!r}") from None
    if not np.isfinite(out).all():
        raise DegenerateLabel(f"{axis} holds a non-finite coordinate: {str(value)[:60]!r}")
    return out


def parse_xy(instance: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The x (column) and y (row) arrays of a point or curve instance."""
    if "x" not in instance or "y" not in instance:
        raise LabelProblem("needs both 'x' and 'y'")
    x, y = _numbers(instance["x"], "x"), _numbers(instance["y"], "y")
    if len(x) != len(y):
        raise LabelProblem(f"x has {len(x)} values but y has {len(y)}")
    return x, y


def instances(value: Any) -> list[dict[str, Any]]:
    """Both JSON variants: one dict per label, or a list of such dicts (several instances)."""
    items = value if isinstance(value, list) else [value]
    for inst in items:
        if not isinstance(inst, dict):
            raise LabelProblem(f"expected an object with 'type', not {type(inst).__name__}")
        t = inst.get("type")
        if t not in STATES:
            raise LabelProblem(f"unknown type {t!r}; expected one of {', '.join(STATES)}")
    return items


# -- geometry ------------------------------------------------------------------------------------
def natural_spline(t: np.ndarray, z: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Natural cubic spline through points ``z`` (complex: x + iy) at knots ``t``, evaluated at ``ts``.

    The same curve as ``scipy.interpolate.CubicSpline(t, pts, bc_type="natural")`` (the tests check
    it) without its per-call overhead, which would dominate at 500 frames/s with several curves a
    frame: second derivatives M from the tridiagonal system (M = 0 at both ends), then a cubic per
    interval. Complex numbers carry x and y through one 1-D computation.
    """
    n = len(t)
    h = t[1:] - t[:-1]
    slope = (z[1:] - z[:-1]) / h
    m = np.zeros(n, complex)
    if n > 2:  # Thomas algorithm on Python numbers: n is small, numpy calls would cost more
        hl = h.tolist()
        rhs = (6 * (slope[1:] - slope[:-1])).tolist()
        diag = [2 * (hl[i] + hl[i + 1]) for i in range(n - 2)]
        for i in range(1, n - 2):
            f = hl[i] / diag[i - 1]
            diag[i] -= f * hl[i]
            rhs[i] -= f * rhs[i - 1]
        sol = [rhs[-1] / diag[-1]]
        for i in range(n - 4, -1, -1):
            sol.append((rhs[i] - hl[i + 1] * sol[-1]) / diag[i])
        m[1:-1] = sol[::-1]
    k = np.searchsorted(t, ts, side="right") - 1
    np.minimum(k, n - 2, out=k)  # ts == t[-1] belongs to the last interval
    u = ts - t[k]
    c1 = (slope - h * (2 * m[:-1] + m[1:]) / 6)[k]
    c3 = ((m[1:] - m[:-1]) / (6 * h))[k]
    return z[k] + u * (c1 + u * (m[k] / 2 + u * c3))


def spline_points(x: np.ndarray, y: np.ndarray, per_pixel: float = SAMPLES_PER_PIXEL,
                  max_length: float = math.inf, *, min_points: int = MIN_CURVE_POINTS,
                  straight: np.ndarray | None = None) -> np.ndarray:
    """Natural cubic spline through (x, y) by cumulative chord length, sampled densely: (n, 2) x, y.

    ``per_pixel`` samples per pixel of chord length (the arc of a smooth curve exceeds its chords
    by a few percent, so 1.25 keeps samples under 1 px apart). Repeated consecutive points are
    dropped (a zero chord has no parameter); fewer than ``min_points`` distinct points is a
    :class:`DegenerateLabel` (2 points give the straight segment between them), and so is a curve
    longer than ``max_length`` pixels (coordinates far off the image would otherwise ask for
    millions of samples). ``straight`` (one flag per control point) makes the piece from point k
    to point k + 1 a straight chord where flag k is non-zero.
    """
    z = x + 1j * y
    flags = None if straight is None else np.asarray(straight, bool)
    if len(z) >= 2:
        keep = np.concatenate([[True], z[1:] != z[:-1]])
        if flags is not None:  # a dropped repeat's flag goes with the point it repeats
            flags = np.logical_or.reduceat(flags, np.flatnonzero(keep))
        z = z[keep]
    if len(z) < min_points:
        need = "a spline needs at least 3" if min_points >= 3 else "a segment needs 2"
        raise DegenerateLabel(f"curve has {len(z)} distinct point(s); {need}")
    t = np.concatenate([[0.0], np.cumsum(np.abs(z[1:] - z[:-1]))])
    if t[-1] > max_length:
        raise DegenerateLabel(f"curve is {t[-1]:.0f} px long in the output, far larger than the image: "
                              f"coordinates out of range?")
    n = max(int(math.ceil(t[-1] * per_pixel)) + 1, len(z))
    ts = np.arange(n) * (t[-1] / (n - 1))  # np.linspace's Python overhead shows at this rate
    ts[-1] = t[-1]
    out = natural_spline(t, z, ts)
    if flags is not None and flags[:-1].any():
        k = np.minimum(np.searchsorted(t, ts, side="right") - 1, len(z) - 2)
        on = flags[k]
        k = k[on]
        u = (ts[on] - t[k]) / (t[k + 1] - t[k])
        out[on] = z[k] + u * (z[k + 1] - z[k])
    return out.view(np.float64).reshape(-1, 2)


def fill_polygon(mask: np.ndarray, x: np.ndarray, y: np.ndarray, value: int) -> None:
    """Set ``value`` where the pixel centre lies inside the closed polygon (even-odd), in place.

    A vectorised scan line over the polygon's bounding box: each edge crosses the pixel-centre rows
    in [min y, max y), so every row meets an even number of crossings.
    """
    h, w = mask.shape
    x1, y1 = np.concatenate([x[1:], x[:1]]), np.concatenate([y[1:], y[:1]])
    r0 = np.maximum(np.ceil(np.minimum(y, y1)), 0).astype(np.int64)  # ufuncs: np.clip is slower here
    r1 = np.minimum(np.ceil(np.maximum(y, y1)), h).astype(np.int64)
    counts = np.maximum(r1 - r0, 0)
    total = int(counts.sum())
    if total == 0:
        return
    edge = np.repeat(np.arange(len(x)), counts)
    rows = r0[edge] + (np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts))
    xa, ya = x[edge], y[edge]
    cross = xa + (rows - ya) / (y1[edge] - ya) * (x1[edge] - xa)  # counts > 0 implies ya != yb
    cols = np.minimum(np.maximum(np.ceil(cross), 0), w).astype(np.int64)
    order = np.argsort(rows * (w + 1) + cols, kind="stable")  # by row, then column
    rows, cols = rows[order], cols[order]
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    left, right = int(cols.min()), int(cols.max())  # spans cover [left, right): work in the box only
    width = right - left + 1
    flat = (rows - top) * width + (cols - left)
    size = (bottom - top) * width
    diff = np.bincount(flat[0::2], minlength=size) - np.bincount(flat[1::2], minlength=size)
    inside = np.cumsum(diff.reshape(bottom - top, width)[:, :-1], axis=1) > 0
    mask[top:bottom, left:right][inside] = value


def _disk(thickness: float) -> tuple[np.ndarray, np.ndarray]:
    r = max(thickness, 1.0) / 2.0
    k = int(math.ceil(r))
    dy, dx = np.mgrid[-k:k + 1, -k:k + 1]
    inside = dy**2 + dx**2 <= max(r - 0.5, 0.0) ** 2 + 1e-9
    return dy[inside], dx[inside]


def draw_line(mask: np.ndarray, x: np.ndarray, y: np.ndarray, value: int, thickness: float) -> None:
    """Stamp a disk ``thickness`` pixels wide at every sample (samples are < 1 px apart), in place."""
    h, w = mask.shape
    dy, dx = _disk(thickness)
    r = (np.rint(y).astype(np.int64)[:, None] + dy[None, :]).ravel()
    c = (np.rint(x).astype(np.int64)[:, None] + dx[None, :]).ravel()
    ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
    mask[r[ok], c[ok]] = value


def between_polygon(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Outline of the region between two sampled curves: a, then b from the end nearest a's end."""
    if np.hypot(*(a[-1] - b[-1])) < np.hypot(*(a[-1] - b[0])):
        b = b[::-1]
    return np.concatenate([a, b])


# -- one entry -----------------------------------------------------------------------------------
class _Class:
    __slots__ = ("blurred", "drawn", "problem")

    def __init__(self) -> None:
        self.drawn = self.blurred = self.problem = False


def render_labels(
    entry: dict[str, Any],
    class_map: ClassMap,
    shape: tuple[int, int],
    transform: PixelTransform = PixelTransform(),
    *,
    image: str = "",
    on_error: str = "stop",
    off_as: str = "absent",
) -> Rendered:
    """Masks, label states and keypoints of one Unity labels entry (``{"labels": {...}}``).

    ``shape`` is the output (H, W); ``transform`` maps PNG pixels to it (letterbox). With
    ``on_error="stop"`` a malformed label raises a DatakitError naming ``image`` and the label;
    with ``"skip"`` that label is left out (its class becomes unknown, its keypoint -1) and
    described in ``problems``. A degenerate label is never an error: it is drawn as a segment
    (2 points, ``line`` rule) or left out as unknown, and described in ``findings``.
    ``off_as="unknown"`` reads ``off`` as unknown (-1) instead of known absent (0).
    """
    if off_as not in OFF_READINGS:
        raise DatakitError(f"--off-as must be {' or '.join(OFF_READINGS)}, not {off_as!r}")
    labels = entry.get("labels") if isinstance(entry, dict) else None
    if not isinstance(labels, dict):
        raise DatakitError("entry has no 'labels' object", image or None)
    problems: list[str] = []
    findings: list[str] = []
    ignored: list[str] = []

    def fail(name: str, reason: str, degenerate: bool = False) -> None:
        if degenerate:
            findings.append(f"{image}: label {name!r}: {reason}; left out: unknown (-1)")
            return
        if on_error == "stop":
            raise DatakitError(f"label {name!r}: {reason}", image or None)
        problems.append(f"{image}: label {name!r} left out: {reason}")

    parsed: dict[str, list[dict[str, Any]] | None] = {}

    def get(name: str) -> list[dict[str, Any]] | None:
        """Instances of a label, [] when absent, None when malformed (already reported)."""
        if name not in parsed:
            try:
                parsed[name] = instances(labels[name]) if name in labels else []
            except LabelProblem as e:
                fail(name, str(e), isinstance(e, DegenerateLabel))
                parsed[name] = None
        return parsed[name]

    def curve(name: str, inst: dict[str, Any], mode: str = "fill") -> np.ndarray | None:
        try:
            x, y = parse_xy(inst)
            straight = _straight(name, inst, len(x))
            tx, ty = transform.apply(x, y)
            pts = spline_points(tx, ty, SAMPLES_PER_PIXEL, max_length,
                                min_points=MIN_LINE_POINTS if mode == "line" else MIN_CURVE_POINTS,
                                straight=straight)
        except LabelProblem as e:
            fail(name, str(e), isinstance(e, DegenerateLabel))
            return None
        z = tx + 1j * ty
        if mode == "line" and 1 + int((z[1:] != z[:-1]).sum()) == MIN_LINE_POINTS:
            findings.append(f"{image}: label {name!r}: curve has 2 distinct points; {SEGMENT}")
        return pts

    def _straight(name: str, inst: dict[str, Any], n: int) -> np.ndarray | None:
        """The ``straight_segment`` flags (one per control point), or None: absent or unreadable."""
        if "straight_segment" not in inst:
            return None
        raw = inst["straight_segment"]
        try:
            flags = _numbers(raw, "straight_segment")
        except LabelProblem as e:
            ignored.append(f"{image}: label {name!r}: straight_segment ignored ({e})")
            return None
        if len(flags) == n - 1:  # one per piece rather than per point: the same information
            flags = np.append(flags, 0)
        if len(flags) != n:
            ignored.append(f"{image}: label {name!r}: straight_segment ignored (it has {len(flags)} "
                            f"value(s) for {n} control points)")
            return None
        return flags != 0

    mask = np.zeros(shape, np.uint8)
    max_length = 20.0 * (shape[0] + shape[1])  # a real contour stays within a few image perimeters
    states = [_Class() for _ in class_map.classes]
    for rule in class_map.rules:
        st = states[rule.index]
        if rule.mode == "between":
            first, second = (get(n) for n in rule.curves)
            if first is None or second is None:
                st.problem = True
                continue
            for ia, ib in zip(first, second, strict=False):  # instance k pairs with instance k
                kinds = {ia["type"], ib["type"]}
                if kinds == {"curve"}:
                    a, b = curve(rule.curves[0], ia), curve(rule.curves[1], ib)
                    if a is None or b is None:
                        st.problem = True
                        continue
                    poly = between_polygon(a, b)
                    fill_polygon(mask, poly[:, 0], poly[:, 1], rule.index)
                    st.drawn = True
                elif "blurred" in kinds:
                    st.blurred = True
                elif "off" in kinds:
                    pass  # 0 only if every defining label is off: decided below
                else:
                    fail(rule.curves[0], f"a 'between' rule needs two curves, found types {sorted(kinds)}")
                    st.problem = True
            continue
        for name in rule.curves:
            insts = get(name)
            if insts is None:
                st.problem = True
                continue
            for inst in insts:
                if inst["type"] == "off":
                    pass  # 0 only if every defining label is off: decided below
                elif inst["type"] == "blurred":
                    st.blurred = True
                else:
                    pts = curve(name, inst, rule.mode)
                    if pts is None:
                        st.problem = True
                    elif rule.mode == "fill":
                        fill_polygon(mask, pts[:, 0], pts[:, 1], rule.index)
                        st.drawn = True
                    else:
                        draw_line(mask, pts[:, 0], pts[:, 1], rule.index, rule.thickness)
                        st.drawn = True
    keypoints = _keypoints(class_map.points, get, transform, fail, off_as)
    # only painted classes can be present; (mask == k).any() beats bincount on uint8
    present = [k == 0 or s.drawn for k, s in enumerate(states)]
    present = [p and bool((mask == k).any()) for k, p in enumerate(present)]
    defining: list[set[str]] = [set() for _ in states]
    for rule in class_map.rules:
        defining[rule.index].update(rule.curves)

    def off(name: str) -> bool:  # present, well formed, and every instance off
        insts = get(name)
        return bool(insts) and all(inst["type"] == "off" for inst in insts)

    all_off = [bool(names) and all(off(n) for n in names) for names in defining]
    absent = 0 if off_as == "absent" else -1
    label_state = np.array([1 if present[k] else -1 if (s.blurred or s.problem or s.drawn) else
                            absent if all_off[k] else -1 for k, s in enumerate(states)], np.int8)
    label_state[0] = 1 if present[0] else 0
    used = class_map.label_names
    return Rendered(mask, label_state, keypoints, problems, unused=sorted(n for n in labels if n not in used),
                    findings=findings, ignored=ignored)


def _keypoints(names: Sequence[str], get: Callable[[str], list[dict[str, Any]] | None],
               transform: PixelTransform, fail: Callable[..., None], off_as: str = "absent") -> np.ndarray:
    """(P, 3) x, y, visibility; the first instance of each point label counts."""
    out = np.full((len(names), 3), np.nan, np.float32)
    for i, name in enumerate(names):
        insts = get(name)
        out[i, 2] = -1  # absent or malformed: unknown
        if not insts:
            continue
        inst = insts[0]
        if inst["type"] == "off":
            out[i, 2] = 0 if off_as == "absent" else -1
        elif inst["type"] == "point":
            try:
                x, y = parse_xy(inst)
                if len(x) != 1:
                    raise LabelProblem(f"a point needs one x and one y, found {len(x)}")
            except LabelProblem as e:
                fail(name, str(e), isinstance(e, DegenerateLabel))
                continue
            tx, ty = transform.apply(x, y)
            out[i] = (tx[0], ty[0], 1)
        elif inst["type"] == "curve":
            fail(name, "is a curve, but the class manifest lists it as a point")
    return out
