"""Unity Imaging echo: PNG frames in ``png-cache/`` with spline labels in JSON (docs/unity.md).

One item per video (the 64-hex code in the file name: ``meta/patient``), so frames of a video
never straddle splits. Each labelled frame becomes one sample: the PNG letterboxed to ``size`` x
``size`` (aspect kept, spacing unknown), its curves rasterised by :func:`datakit.sources.unity.splines.render_labels`
in the stored grid, its points as keypoints through the same transform.

Errors (``on_error``): with ``"stop"`` any bad key, missing image or malformed label stops the
conversion, naming the labels file and key. With ``"skip"``:
- a bad key (not a Unity file name, absolute, or resolving outside SRC, symbolic links followed)
  or a missing or unreadable image drops that frame (never read); the other frames of its video
  are kept;
- a malformed label (non-numeric coordinates, x and y of different lengths, unknown type) drops
  that label only: the frame is kept, the label's class gets state -1 (unknown) unless another
  label draws it, a point's keypoint gets visibility -1.
Each is recorded in the store's ``notes`` attribute and printed.

Degenerate labels (a curve with too few points or a non-finite coordinate, as real exports hold)
are not errors with either setting: the frame is kept, a 2-point curve of a ``line`` rule is drawn
as a segment, any other such label is left out as unknown (-1) (:mod:`datakit.sources.unity.splines`). Each is a
note ``degenerate label <labels file>#<key>: label '<name>': <reason>``, and the conversion ends
with a one-line summary of them.

Split files (``labels-train`` / ``-tune`` (or the 2020 ``-val``) / ``-ival``, ``.json`` or ``.txt``)
are looked for beside the labels file first (real releases keep them in ``labels/``), then in SRC.
"""

from __future__ import annotations

import posixpath
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from datakit.errors import DatakitError
from datakit.io.raster import load_png
from datakit.normalize import normalizer_name
from datakit.safe_io import read_json as safe_read_json
from datakit.safe_io import read_lines, regular_file
from datakit.sample import Sample, unknown_labels
from datakit.sources.base import ItemResult, SourceBase, check_size
from datakit.sources.unity.classes import ClassMap, load_class_map
from datakit.sources.unity.splines import OFF_READINGS, SEGMENT
from datakit.splits import SplitResult

IMAGE_NAME = re.compile(r"^(\d{2})-([0-9a-fA-F]{64})-(\d{4})\.png$")
# split name in the store -> Unity's file stem (a .json of labels, or a .txt list of image names)
SPLIT_FILES = {"train": "labels-train", "valid": "labels-tune", "test": "labels-ival"}
SPLIT_ALIASES = {"valid": ("labels-val",)}  # Unity's 2020 code wrote labels-val.json for the tuning set
DEGENERATE = "degenerate label "  # the prefix of the notes the end-of-conversion summary counts
SPLIT_PRIORITY = ("test", "valid", "train")  # a tie between splits goes to the held-out one


@dataclass(frozen=True)
class UnityFrame:
    key: str  # the JSON key
    path: str  # image path relative to SRC (posix)
    frame: str  # the 4 digits of the file name
    entry: dict[str, Any]


@dataclass(frozen=True)
class UnityItem:
    patient: str  # the video's 64-hex code, lower case
    frames: tuple[UnityFrame, ...]
    notes: tuple[str, ...] = ()  # problems found while listing (on_error="skip"), reported once


def image_path(key: str) -> tuple[str, re.Match[str]]:
    """Relative image path of a labels key, by the png-cache rule; raises on an unsafe key.

    A bare file name maps to ``png-cache/<class>/<h1>/<h2>/<name>``; a key that is already a
    relative path is taken as is. Absolute paths and paths leaving SRC are refused, never read.
    """
    if not isinstance(key, str) or not key.strip():
        raise DatakitError("empty image name")
    text = key.replace("\\", "/")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        raise DatakitError("is an absolute path; refused (only names under SRC are read)")
    norm = posixpath.normpath(text)
    if norm == ".." or norm.startswith("../"):
        raise DatakitError("resolves outside SRC; refused (only names under SRC are read)")
    name = posixpath.basename(norm)
    m = IMAGE_NAME.match(name)
    if not m:
        raise DatakitError("is not a Unity image name <class>-<64 hex>-<frame 4 digits>.png")
    if "/" in norm:
        return norm, m
    code = m.group(2).lower()
    return f"png-cache/{m.group(1)}/{code[:2]}/{code[2:4]}/{name}", m


def read_json(path: Path, what: str) -> Any:
    return safe_read_json(path, what)  # regular files only; deep nesting refused


@dataclass
class UnitySource(SourceBase):
    root: Path
    labels: Path | None = None  # default SRC/labels-all.json, else SRC/labels/labels-all.json
    classes_file: Path | None = None  # default manifests/unity_classes.json
    size: int = 256
    norm: str = "scale255"
    on_error: str = "stop"
    name: str = "unity"
    channels: int = 1
    stratify_column: str | None = None
    off_as: str = "absent"  # what an "off" label means: known absent (0) or unknown (-1)
    official_split_from: ClassVar[str] = "labels-train/-tune/-ival (.json or .txt) beside the labels file or in SRC"
    class_map: ClassMap = field(init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not self.root.is_dir():
            raise DatakitError("not a folder", self.root)
        check_size(self.size)
        self.class_map = load_class_map(self.classes_file)
        self.classes = self.class_map.classes
        self.keypoint_names = self.class_map.points or None
        self.image_size = (self.size, self.size)
        self.normalization = normalizer_name(self.norm)
        if self.off_as not in OFF_READINGS:
            raise DatakitError(f"--off-as must be {' or '.join(OFF_READINGS)}, not {self.off_as!r}")
        self.labels_path = self._labels_path()

    def _labels_path(self) -> Path:
        if self.labels is None:
            in_folder = self.root / "labels" / "labels-all.json"
            top = self.root / "labels-all.json"
            # exists(), not is_file(): a FIFO or folder there is reported as such when read, not as missing
            return in_folder if in_folder.exists() and not top.exists() else top
        given = Path(self.labels)
        if given.is_absolute():
            return given
        # a relative name is SRC's first: a same-named file in the current folder must not win
        in_src = self.root / given
        return in_src if in_src.exists() or not given.exists() else given

    def _problem(self, reason: str, where: str, notes: list[str]) -> None:
        if self.on_error == "stop":
            raise DatakitError(reason, where)
        notes.append(f"skipped frame {where}: {reason}")

    def _inside_root(self, rel: str) -> bool:
        """Whether ``rel`` under SRC stays there once symbolic links are followed (the key text
        check cannot see a linked ``png-cache`` folder pointing elsewhere)."""
        return (self._real_root / rel).resolve().is_relative_to(self._real_root)

    @cached_property
    def _real_root(self) -> Path:
        return self.root.resolve()

    # -- listing ----------------------------------------------------------------------------------
    def items(self) -> list[UnityItem]:
        data = read_json(self.labels_path, "labels file")
        if not isinstance(data, dict):
            raise DatakitError("expected a JSON object mapping image name -> {labels: ...}", self.labels_path)
        videos: dict[str, list[UnityFrame]] = {}
        notes: list[str] = []
        names: set[str] = set()
        for key, entry in data.items():
            where = f"{self.labels_path.name}#{key}"
            try:
                rel, m = image_path(key)
            except DatakitError as e:
                self._problem(e.reason, where, notes)
                continue
            if not self._inside_root(rel):
                self._problem("resolves outside SRC through a symbolic link; refused (only files under "
                              "SRC are read)", where, notes)
                continue
            try:  # the one check (a FIFO or a folder is named as such, not "not found"); never opened here
                regular_file(self.root / rel, "image")
            except DatakitError as e:
                self._problem(f"{e.reason}: {rel}" if e.reason == "image not found" else f"{rel}: {e.reason}",
                              where, notes)
                continue
            if isinstance(entry, dict) and isinstance(entry.get("labels"), dict):
                names.update(entry["labels"])
            videos.setdefault(m.group(2).lower(), []).append(UnityFrame(key, rel, m.group(3), entry))
        unused = sorted(names - self.class_map.label_names)
        if unused:
            notes.append(f"{self.labels_path.name}: labels not in the class manifest, ignored: {', '.join(unused)}")
        items = [UnityItem(code, tuple(sorted(frames, key=lambda f: (f.frame, f.path))))
                 for code, frames in sorted(videos.items())]
        if items and notes:
            items[0] = UnityItem(items[0].patient, items[0].frames, tuple(notes))
        return items

    # -- one video -------------------------------------------------------------------------------
    def read(self, item: UnityItem) -> ItemResult:
        from datakit.prepare import prepare_2d
        from datakit.sources.unity.splines import PixelTransform, render_labels

        notes = list(item.notes)
        samples: list[Sample] = []
        k = len(self.classes)
        for fr in item.frames:
            where = f"{self.labels_path.name}#{fr.key}"
            try:
                raw = load_png(self.root / fr.path)
            except DatakitError as e:
                self._problem(e.reason, where, notes)
                continue
            # letterbox the raw frame, then normalise (no blur): Unity's own order, kept for its bytes
            prepared = prepare_2d(raw, self.size, self.norm, normalise_first=False, antialias=False)
            image, scale, offset = prepared.image, prepared.scale, prepared.offset
            try:
                out = render_labels(fr.entry, self.class_map, self.image_size, PixelTransform(scale, offset),
                                    image=where, on_error=self.on_error, off_as=self.off_as)
            except DatakitError as e:  # reached only for frame-level problems when skipping
                self._problem(e.reason, where, notes)
                continue
            notes += out.problems
            notes += [f"{DEGENERATE}{f}" for f in out.findings] + out.ignored
            if len(out.label_state) != k:  # pragma: no cover - the class map fixes both
                raise AssertionError("label_state length differs from classes")
            samples.append(Sample(
                image=image[None], mask=out.mask, scribble=unknown_labels(self.image_size),
                label_state=out.label_state, dataset=self.name, patient=item.patient, frame=fr.frame,
                view="", slice=-1, source=fr.path, keypoints=out.keypoints if self.keypoint_names else None,
                extra={"source_shape": np.array(raw.shape, np.int32)},
            ))
        classes = sorted({IMAGE_NAME.match(posixpath.basename(f.path)).group(1) for f in item.frames})
        row = {"id": item.patient, "image_class": ",".join(classes), "frames": float(len(samples))}
        return ItemResult(samples, row, notes)

    # -- splits -----------------------------------------------------------------------------------
    def split_folders(self) -> list[Path]:
        """Where split files are looked for: beside the labels file, then SRC."""
        return list(dict.fromkeys([self.labels_path.parent, self.root]))

    def split_files(self) -> dict[str, Path]:
        """Unity's own split files: split name -> labels JSON (or its .txt list), all from the first
        folder of :meth:`split_folders` that holds any (never a mix of two folders)."""
        for folder in self.split_folders():
            found = {}
            for split, stem in SPLIT_FILES.items():
                for name in (stem, *SPLIT_ALIASES.get(split, ())):
                    # exists(), not is_file(): a FIFO or a folder is found, then refused by name when
                    # read (safe_io.regular_file), instead of passing for an absent split file
                    hit = next((folder / f"{name}{ext}" for ext in (".json", ".txt")
                                if (folder / f"{name}{ext}").exists()), None)
                    if hit is not None:
                        found[split] = hit
                        break
            if found:
                return found
        return {}

    def default_split(self) -> str:
        return "official" if self.split_files() else "random"

    def split_note(self, spec: str) -> str | None:
        """Which split is used and why, when it is not Unity's own (for the output and the notes)."""
        files = self.split_files()
        if spec == "official":
            return None  # the store's split method names the files
        where = " or ".join(str(f) for f in self.split_folders())
        if not files:
            return (f"split: {spec}, not Unity's official one: no labels-train/-tune/-ival (.json or .txt) "
                    f"beside the labels file or in SRC (looked in {where})")
        return (f"split: {spec} as asked, not Unity's official one "
                f"({', '.join(p.name for p in files.values())} in {next(iter(files.values())).parent})")

    # -- summary ---------------------------------------------------------------------------------
    def summary_notes(self, notes: list[str]) -> list[str]:
        """One line counting the degenerate labels listed in ``notes`` (none: no line)."""
        found = [n for n in notes if n.startswith(DEGENERATE)]
        if not found:
            return []
        segments = sum(n.endswith(SEGMENT) for n in found)
        frames = len({n[len(DEGENERATE):].split(": label ", 1)[0] for n in found})
        return [f"degenerate labels: {len(found)} in {frames} frame(s) ({segments} 2-point line curve(s) drawn "
                f"as straight segments, {len(found) - segments} left out as unknown, label state -1); "
                f"each is listed above and in the store's notes"]

    def official_split(self, videos: list[str]) -> SplitResult:
        """Videos to train / valid / test from labels-train / -tune / -ival, never cut.

        A video whose frames the files put in several splits goes where most of its frames are
        (ties: test, then valid), and is reported.
        """
        files = self.split_files()
        votes: dict[str, Counter[str]] = {}
        for split, path in files.items():
            if path.suffix == ".json":
                data = read_json(path, "split file")
                if not isinstance(data, dict):
                    raise DatakitError("expected a JSON object mapping image name -> labels", path)
                names = list(data)
            else:
                names = read_lines(path, "split list")
            for name in names:
                m = IMAGE_NAME.match(posixpath.basename(str(name).replace("\\", "/")))
                if m:
                    votes.setdefault(m.group(2).lower(), Counter())[split] += 1
        out: dict[str, list[str]] = {s: [] for s in SPLIT_FILES}
        notes: list[str] = []
        for video in videos:
            v = votes.get(video)
            if not v:
                notes.append(f"video {video} is in none of the split files: in no split")
                continue
            best = max(v, key=lambda s: (v[s], -SPLIT_PRIORITY.index(s)))
            if len(v) > 1:
                notes.append(f"video {video} has frames in {dict(v)}; all go to {best!r} (a video is never cut)")
            out[best].append(video)
        stems = ",".join(p.name for p in files.values())
        return SplitResult({s: sorted(v) for s, v in out.items()}, f"official:{stems}", None, [], notes)
