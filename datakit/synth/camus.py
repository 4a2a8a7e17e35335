"""CAMUS phantoms in the exact layouts of both public releases, for the demo, tests and benchmark.

NIfTI release (``release="nifti"``)::

    database_nifti/patientNNNN/patientNNNN_{2CH,4CH}_{ED,ES}[_gt].nii.gz
                               patientNNNN_{VIEW}_half_sequence[_gt].nii.gz   (time last; see below)
                               Info_{VIEW}.cfg   (ED, ES, NbFrame, Sex, Age, ImageQuality, EF, FrameRate)
    database_split/subgroup_{training,validation,testing}.txt

MHD/RAW release (``release="mhd"``)::

    training/patientNNNN/patientNNNN_{VIEW}_{ED,ES}[_gt].mhd + .raw, patientNNNN_{VIEW}_sequence.mhd
                         Info_{VIEW}.cfg   (ED, ES, NbFrame, Sex, Age, ImageQuality, LVedv, LVesv, LVef)
    testing/patientNNNN/  (the same without any _gt file)
    listSubGroups/subGroup{1..10}_{training,validation,testing}.txt

Every file is written by SimpleITK: uint8, anisotropic spacing (column spacing about twice the row
spacing, as the real files), arrays (H, W) with the sector apex at row 0. The heart: an LV cavity
in a myocardial wall open at the mitral plane, the left atrium below it; the LV contracts and the
LA fills from ED to ES. The image: an ultrasound fan with depth attenuation and Rayleigh speckle.
The phantoms' half sequences run ED -> ES; real ones run in either order (some ES -> ED, ED > ES in
the Info cfg), which the tests build by reversing a phantom's. In the MHD release some patients have
ED after ES in their full sequence, as the real data does. ``listSubGroups/`` is written at the
release root; real copies may hold it in ``training/`` (the converter looks in both).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datakit.choices import CAMUS_RELEASES
from datakit.errors import DatakitError
from datakit.synth import check_output_folder

VIEWS = ("2CH", "4CH")
QUALITIES = ("Good", "Medium", "Poor")
HALF_ANGLE = math.radians(37.5)  # half the opening of the ultrasound sector


@dataclass(frozen=True)
class ViewGeometry:
    shape: tuple[int, int]  # (H, W) pixels
    spacing: tuple[float, float]  # (row, col) mm
    depth: float  # mm

    @classmethod
    def draw(cls, rng: np.random.Generator, row_spacing: float) -> ViewGeometry:
        sy = row_spacing * rng.uniform(0.95, 1.05)
        sx = sy * rng.uniform(1.8, 2.2)  # anisotropic, as CAMUS
        depth = rng.uniform(110, 135)
        h = int(round(depth / sy))
        w = int(round(2 * depth * math.sin(HALF_ANGLE) / sx)) + 1
        return cls((h, w), (sy, sx), depth)

    def mm(self) -> tuple[np.ndarray, np.ndarray]:
        """(y, x) in mm of every pixel: y depth from the apex, x lateral from the sector axis."""
        h, w = self.shape
        y = (np.arange(h, dtype=np.float32) * self.spacing[0])[:, None]
        x = ((np.arange(w, dtype=np.float32) - (w - 1) / 2) * self.spacing[1])[None, :]
        return np.broadcast_to(y, self.shape), np.broadcast_to(x, self.shape)


def heart_labels(geo: ViewGeometry, phase: float, tilt: float, la_scale: float) -> np.ndarray:
    """Labels (0 BG, 1 LV, 2 MYO, 3 LA) at ``phase`` 0 (ED) .. 1 (ES); apex at the top."""
    y, x = geo.mm()
    d = geo.depth
    c, s = math.cos(tilt), math.sin(tilt)
    u = (y - 0.40 * d) * c + x * s  # along the long axis, towards the base
    v = -(y - 0.40 * d) * s + x * c
    a_ed = 0.26 * d
    a, b = a_ed * (1 - 0.10 * phase), 0.12 * d * (1 - 0.22 * phase)
    wall = 0.06 * d * (1 + 0.25 * phase)
    mitral = 0.82 * a_ed  # the mitral plane stays put (u coordinate)
    inside_lv = (u / a) ** 2 + (v / b) ** 2 < 1
    inside_epi = (u / (a + wall)) ** 2 + (v / (b + wall)) ** 2 < 1
    la_len, la_wid = 0.13 * d * la_scale * (1 + 0.15 * phase), 0.11 * d * la_scale
    inside_la = ((u - mitral - la_len) / la_len) ** 2 + (v / la_wid) ** 2 < 1
    lab = np.zeros(geo.shape, np.uint8)
    lab[inside_la & (u >= mitral)] = 3
    lab[inside_epi & (u < mitral)] = 2
    lab[inside_lv & (u < mitral)] = 1
    return lab


def echo_image(geo: ViewGeometry, labels: np.ndarray, rng: np.random.Generator, gain: float) -> np.ndarray:
    """An echo-like uint8 image: fan, depth attenuation, dark blood, bright wall, Rayleigh speckle."""
    y, x = geo.mm()
    r = np.hypot(y, x)
    fan = (r < geo.depth) & (np.abs(np.arctan2(x, y)) < HALF_ANGLE)
    echo = np.array([70.0, 12.0, 150.0, 12.0], np.float32)[labels]
    speckle = rng.rayleigh(1.0, geo.shape).astype(np.float32) / math.sqrt(math.pi / 2)
    img = echo * speckle * gain * np.exp(-0.6 * r / geo.depth)
    img[~fan] = 0
    return np.clip(img, 0, 255).astype(np.uint8)


def _phase(frame: int, ed: int, es: int) -> float:
    """0 at ED, 1 at ES, smooth between, 0 beyond ED (frames are 1-based; ED may follow ES)."""
    t = float(np.clip(1 - abs(frame - es) / max(abs(es - ed), 1), 0, 1))
    return 0.5 - 0.5 * math.cos(math.pi * t)


def _write(sitk, array: np.ndarray, spacing: tuple[float, float], path: Path) -> None:
    """(H, W) or (T, H, W) array -> SimpleITK image with (col, row[, 1]) spacing."""
    img = sitk.GetImageFromArray(array)
    img.SetSpacing((spacing[1], spacing[0]) + ((1.0,) if array.ndim == 3 else ()))
    sitk.WriteImage(img, str(path))


@dataclass(frozen=True)
class PatientFacts:
    sex: str
    age: int
    ef: float


def write_view(folder: Path, pid: str, view: str, release: str, rng: np.random.Generator,
               facts: PatientFacts, row_spacing: float, with_gt: bool) -> None:
    import SimpleITK as sitk

    geo = ViewGeometry.draw(rng, row_spacing)
    tilt = math.radians(rng.uniform(-8, 8))
    la_scale = rng.uniform(0.9, 1.15) * (1.05 if view == "4CH" else 1.0)
    gain = rng.uniform(0.9, 1.4)
    ext = ".nii.gz" if release == "nifti" else ".mhd"
    if release == "nifti":  # this phantom's half sequence runs from ED to ES (real ones: either order)
        nb = int(rng.integers(10, 21))
        ed, es = 1, nb
        seq_name = "half_sequence"
    else:  # the full sequence; ED after ES in about one patient in four, as the real data has it
        nb = int(rng.integers(14, 23))
        if rng.random() < 0.25:
            es, ed = int(rng.integers(2, 5)), int(nb - rng.integers(1, 4))
        else:
            ed, es = 1, int(rng.integers(nb // 2, nb - 2))
        seq_name = "sequence"
    labels = np.stack([heart_labels(geo, _phase(f, ed, es), tilt, la_scale) for f in range(1, nb + 1)])
    images = np.stack([echo_image(geo, lab, rng, gain) for lab in labels])
    stem = f"{pid}_{view}"
    _write(sitk, images, geo.spacing, folder / f"{stem}_{seq_name}{ext}")
    if release == "nifti" and with_gt:
        _write(sitk, labels, geo.spacing, folder / f"{stem}_{seq_name}_gt{ext}")
    for label, frame in (("ED", ed), ("ES", es)):
        _write(sitk, images[frame - 1], geo.spacing, folder / f"{stem}_{label}{ext}")
        if with_gt:
            _write(sitk, labels[frame - 1], geo.spacing, folder / f"{stem}_{label}_gt{ext}")
    quality = QUALITIES[int(rng.choice(3, p=[0.45, 0.4, 0.15]))]
    lines = [f"ED: {ed}", f"ES: {es}", f"NbFrame: {nb}", f"Sex: {facts.sex}", f"Age: {facts.age}",
             f"ImageQuality: {quality}"]
    if release == "nifti":
        lines += [f"EF: {facts.ef:.0f}", f"FrameRate: {float(rng.choice([25.0, 33.0, 50.0]))}"]
    else:
        edv = rng.uniform(80, 200)
        lines += [f"LVedv: {edv:.2f}", f"LVesv: {edv * (1 - facts.ef / 100):.2f}", f"LVef: {facts.ef:.2f}"]
    (folder / f"Info_{view}.cfg").write_text("\n".join(lines) + "\n")


def _write_lines(path: Path, ids: list[str]) -> None:
    path.write_text("".join(f"{p}\n" for p in ids))


def write_camus_phantoms(out: str | Path, patients: int = 10, release: str = "nifti", seed: int = 0,
                         overwrite: bool = False, row_spacing: float = 0.154,
                         testing: int | None = None, progress: Callable[[int], None] | None = None) -> list[Path]:
    """Write ``patients`` phantom patients in the ``release`` layout; returns their folders.

    ``row_spacing`` (mm) sets the image size: the default gives about 800 x 550 pixels at 0.154 x
    0.31 mm, the size commonly reported for CAMUS (not confirmed on a real file here); coarser is
    faster to test.
    ``testing`` (MHD release): how many of the last patients go to ``testing/`` without ground
    truth (default: one in ten). ``progress(1)`` after each patient.
    """
    if release not in CAMUS_RELEASES:
        raise DatakitError(f"--release must be {' or '.join(CAMUS_RELEASES)}, not {release!r}")
    if row_spacing <= 0:
        raise DatakitError(f"row spacing must be positive, not {row_spacing}")
    out = Path(out)
    check_output_folder(out, overwrite)
    ids = [f"patient{n:04d}" for n in range(1, patients + 1)]
    n_test = (patients // 10 if testing is None else min(testing, patients)) if release == "mhd" else 0
    labelled = ids[: patients - n_test]
    paths = []
    for i, pid in enumerate(ids):
        rng = np.random.default_rng([seed, i + 1])
        facts = PatientFacts(str(rng.choice(["F", "M"])), int(rng.integers(20, 90)), float(rng.uniform(25, 70)))
        with_gt = pid in labelled
        sub = "database_nifti" if release == "nifti" else ("training" if with_gt else "testing")
        folder = out / sub / pid
        folder.mkdir(parents=True, exist_ok=True)
        for view in VIEWS:
            write_view(folder, pid, view, release, rng, facts, row_spacing, with_gt)
        paths.append(folder)
        if progress is not None:
            progress(1)
    if release == "nifti":
        _write_nifti_split(out / "database_split", ids)
    else:
        _write_folds(out / "listSubGroups", labelled)
    return paths


def _write_nifti_split(folder: Path, ids: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    n = len(ids)
    n_small = max(1, round(0.1 * n)) if n >= 3 else 0
    n_train = n - 2 * n_small
    _write_lines(folder / "subgroup_training.txt", ids[:n_train])
    _write_lines(folder / "subgroup_validation.txt", ids[n_train:n_train + n_small])
    _write_lines(folder / "subgroup_testing.txt", ids[n_train + n_small:])


def _write_folds(folder: Path, ids: list[str], k: int = 10) -> None:
    """Ten cross-validation folds: fold k tests on group k, validates on group k+1."""
    folder.mkdir(parents=True, exist_ok=True)
    group = {pid: i % k for i, pid in enumerate(ids)}
    for fold in range(k):
        test = [p for p in ids if group[p] == fold]
        valid = [p for p in ids if group[p] == (fold + 1) % k]
        train = [p for p in ids if p not in test and p not in valid]
        _write_lines(folder / f"subGroup{fold + 1}_training.txt", train)
        _write_lines(folder / f"subGroup{fold + 1}_validation.txt", valid)
        _write_lines(folder / f"subGroup{fold + 1}_testing.txt", test)
