"""The Unity class manifest: which label names make which class, and how (``--classes FILE``).

Format (the default is ``manifests/unity_classes.json``)::

    {"classes": ["background", "LV", ...],            # label value = index; "background" first
     "rules": [{"class": "LV", "mode": "fill", "curves": ["curve-lv-endo"]},
               {"class": "MYO", "mode": "between", "curves": ["curve-lv-post-endo", "curve-lv-post-epi"]},
               {"class": "WALL", "mode": "line", "curves": ["curve-lv-antsep-rv"], "thickness": 3}],
     "points": ["mv-ant-hinge", ...]}                  # keypoint names, in stored order

Rules paint in list order (later ones win where they overlap). ``thickness`` is in output pixels
(default ``line_thickness``, else 3).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datakit.errors import DatakitError
from datakit.resources import manifest
from datakit.safe_io import read_json

DEFAULT_MANIFEST = manifest("unity_classes.json")  # manifests/unity_classes.json, as installed
MODES = {"fill": 1, "line": 1, "between": 2}  # mode -> number of curves per rule


@dataclass(frozen=True)
class Rule:
    cls: str
    index: int  # label value of cls
    mode: str
    curves: tuple[str, ...]
    thickness: float = 3.0


@dataclass(frozen=True)
class ClassMap:
    classes: list[str]
    rules: list[Rule]
    points: list[str]

    @property
    def label_names(self) -> set[str]:
        return {n for r in self.rules for n in r.curves} | set(self.points)


def _fail(path: Path, key: str, reason: str) -> DatakitError:
    return DatakitError(reason, f"{path}#{key}")


def _rule(path: Path, i: int, raw: Any, classes: list[str], default_thickness: float) -> Rule:
    key = f"rules[{i}]"
    if not isinstance(raw, dict):
        raise _fail(path, key, "expected an object with class, mode and curves")
    cls, mode, curves = raw.get("class"), raw.get("mode"), raw.get("curves")
    if cls not in classes or cls == classes[0]:
        raise _fail(path, f"{key}.class", f"{cls!r} is not one of the foreground classes {classes[1:]}")
    if mode not in MODES:
        raise _fail(path, f"{key}.mode", f"{mode!r} is not one of {', '.join(MODES)}")
    if isinstance(curves, str):
        curves = [curves]
    if not isinstance(curves, list) or not curves or not all(isinstance(c, str) and c for c in curves):
        raise _fail(path, f"{key}.curves", "expected a list of label names")
    if mode == "between" and len(curves) != 2:
        raise _fail(path, f"{key}.curves", f"'between' needs exactly 2 curves, not {len(curves)}")
    thickness = raw.get("thickness", default_thickness)
    if isinstance(thickness, bool) or not isinstance(thickness, (int, float)) or not 0 < thickness <= 64:
        raise _fail(path, f"{key}.thickness", f"expected a number of pixels in (0, 64], not {thickness!r}")
    return Rule(cls, classes.index(cls), mode, tuple(curves), float(thickness))


def load_class_map(path: str | Path | None = None) -> ClassMap:
    """Read and check a class manifest; errors name the file and the JSON key."""
    path = Path(path) if path is not None else DEFAULT_MANIFEST
    if path is not DEFAULT_MANIFEST:  # a user's file: regular files only, deep nesting refused
        raw = read_json(path, "class manifest")
    else:  # the shipped manifest, possibly inside an installed package (importlib.resources)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise DatakitError(f"class manifest is not valid JSON ({e})", path) from None
    if not isinstance(raw, dict):
        raise DatakitError("expected a JSON object with classes, rules and points", path)
    classes = raw.get("classes")
    if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) and c for c in classes):
        raise _fail(path, "classes", "expected a list of at least 2 class names, background first")
    if len(set(classes)) != len(classes) or len(classes) > 255:
        raise _fail(path, "classes", "class names must be unique, at most 255")
    rules_raw = raw.get("rules")
    if not isinstance(rules_raw, list) or not rules_raw:
        raise _fail(path, "rules", "expected a non-empty list of rules")
    default_thickness = raw.get("line_thickness", 3.0)
    rules = [_rule(path, i, item, classes, default_thickness) for i, item in enumerate(rules_raw)]
    points = raw.get("points", [])
    if not isinstance(points, list) or not all(isinstance(p, str) and p for p in points) \
            or len(set(points)) != len(points):
        raise _fail(path, "points", "expected a list of unique label names")
    return ClassMap(list(classes), rules, list(points))
