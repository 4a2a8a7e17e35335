"""ACDC phantoms in the exact ACDC layout, for the demo and the tests.

``training/patientXXX/``: ``Info.cfg`` (ED, ES, Group, Height, NbFrame, Weight), the 4D cine
``patientXXX_4d.nii.gz`` (int16), ``patientXXX_frameYY.nii.gz`` for ED and ES, their ``_gt`` masks
(uint8: 0 background, 1 RV, 2 MYO, 3 LV) and Valvano-format ``_scribble.nii.gz`` (uint16, 4 =
unlabelled). Geometry as ACDC: (x, y, z) volumes, in-plane 1.25-1.8 mm, 5-10 mm slices, affine
diag(-sx, -sy, sz). The heart: an LV blood pool in a myocardial ring, an RV crescent beside it,
both shrinking from base to apex and contracting from ED to ES.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize

from datakit.synth import check_output_folder

GROUPS = ("DCM", "HCM", "MINF", "NOR", "RV")


def _heart(shape: tuple[int, int], spacing: float, centre: tuple[float, float], lv_r_mm: float,
           wall_mm: float, rv_scale: float) -> np.ndarray:
    """One short-axis slice of labels (0 BG, 1 RV, 2 MYO, 3 LV)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    dy, dx = (yy - centre[0]) * spacing, (xx - centre[1]) * spacing
    r = np.hypot(dy, dx)
    lab = np.zeros(shape, np.uint8)
    epi = lv_r_mm + wall_mm
    # RV: an ellipse beside the septum, minus the LV and its wall
    if rv_scale > 0:
        rv_c = (0.0, -(epi + 0.55 * lv_r_mm * rv_scale))
        rv = ((dy - rv_c[0]) / (1.25 * lv_r_mm * rv_scale)) ** 2 \
            + ((dx - rv_c[1]) / (0.8 * lv_r_mm * rv_scale)) ** 2 < 1
        lab[rv & (r > epi)] = 1
    lab[r <= epi] = 2
    lab[r <= lv_r_mm] = 3
    return lab


def _scribble(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Valvano-style scribbles: a line inside each structure and a broken ring of background; 4 elsewhere.

    The skeleton of a ring (myocardium) or crescent (RV) is a good stroke; that of a round blood
    pool collapses to a point, so such a region gets a chord through its centre instead, as an
    annotator would draw it.
    """
    out = np.full(labels.shape, 4, np.uint16)
    for c in (1, 2, 3):
        region = ndimage.binary_erosion(labels == c, iterations=2)
        if region.sum() < 10:
            continue
        line = skeletonize(region)
        if line.sum() < 8:
            rows, cols = np.nonzero(region)
            angle = rng.uniform(0, np.pi)
            t = np.linspace(-1, 1, 200)[:, None] * np.hypot(np.ptp(rows), np.ptp(cols))
            pts = np.round([rows.mean(), cols.mean()] + t * [np.sin(angle), np.cos(angle)]).astype(int)
            ok = (pts >= 0).all(axis=1) & (pts[:, 0] < labels.shape[0]) & (pts[:, 1] < labels.shape[1])
            line = np.zeros_like(region)
            line[pts[ok, 0], pts[ok, 1]] = True
            line &= region
        out[line] = c
    heart = labels > 0
    ring = ndimage.binary_dilation(heart, iterations=8) & ~ndimage.binary_dilation(heart, iterations=6)
    out[ring & (labels == 0) & (rng.random(labels.shape) < 0.6)] = 0
    return out


def _image(labels: np.ndarray, tissue: np.ndarray, rng: np.random.Generator, gain: float) -> np.ndarray:
    """Cine-SSFP-like intensities: bright blood, dark myocardium, textured body tissue, dark air; int16."""
    means = np.array([0.0, 420.0, 110.0, 450.0], np.float32)
    img = np.where(labels == 0, tissue, means[labels])
    img = ndimage.uniform_filter(img, 3) + rng.normal(0, 10, labels.shape).astype(np.float32)
    return np.clip(img * gain, 0, 4000).astype(np.int16)


def _body(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Static anatomy around the heart: a body ellipse of smooth tissue (~80-260) on dark air (~15)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    cy, cx = shape[0] / 2, shape[1] / 2
    inside = ((yy - cy) / (0.46 * shape[0])) ** 2 + ((xx - cx) / (0.47 * shape[1])) ** 2 < 1
    texture = ndimage.gaussian_filter(rng.normal(0, 1, shape), 4)
    texture = 170 + 45 * texture / (texture.std() or 1)
    return np.where(inside, np.clip(texture, 60, 300), 15.0).astype(np.float32)


def write_patient(folder: Path, number: int, rng: np.random.Generator, cine: bool = True) -> None:
    pid = f"patient{number:03d}"
    d = folder / pid
    d.mkdir(parents=True, exist_ok=True)
    # ACDC numbers its groups in blocks of 20; phantom sets are small, so cycle through the groups
    group = GROUPS[(number - 1) % len(GROUPS)]
    nb_frames = int(rng.integers(12, 31))
    ed, es = 1, int(rng.integers(nb_frames // 3, nb_frames // 2 + 2))
    sp = float(rng.choice([1.25, 1.3672, 1.4844, 1.5625, 1.7188]))
    thick = float(rng.choice([5.0, 6.5, 10.0]))
    shape = (int(rng.integers(18, 24)) * 10 + (0 if rng.random() < 0.5 else 6), 256)
    nz = int(rng.integers(6, 11)) if thick == 10 else int(rng.integers(10, 16))
    centre = (shape[0] / 2 + rng.uniform(-10, 10), shape[1] / 2 + rng.uniform(-15, 15))
    lv_ed = rng.uniform(25, 32) * (1.25 if group == "DCM" else 1.0)
    wall = rng.uniform(7, 10) * (1.5 if group == "HCM" else 1.0)
    rv_scale = 1.3 if group == "RV" else 1.0
    gain = rng.uniform(0.8, 1.5)
    affine = np.diag([-sp, -sp, thick, 1.0])
    cine_volume = np.zeros((*shape, nz, nb_frames), np.int16)
    # static tissue texture, one per slice (the anatomy outside the heart does not beat)
    tissue = [_body(shape, rng) for _ in range(nz)]
    frames: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for t in range(nb_frames):
        # contraction: the LV radius shrinks from ED to ES and back (cosine cycle)
        phase = 0.5 - 0.5 * np.cos(np.pi * min(t, es - 1) / max(es - 1, 1)) if t < es else \
            0.5 + 0.5 * np.cos(np.pi * (t - es + 1) / max(nb_frames - es + 1, 1))
        lv_r = lv_ed * (1 - 0.35 * phase)
        labels = np.zeros((*shape, nz), np.uint8)
        for z in range(nz):
            taper = 1.0 - 0.6 * z / max(nz - 1, 1)  # base (z = 0) to apex
            labels[:, :, z] = _heart(shape, sp, centre, lv_r * taper, wall * (1 + 0.2 * phase),
                                     rv_scale * (1.0 if z < nz - 2 else 0.0))
        vol = np.stack([_image(labels[:, :, z], tissue[z], rng, gain) for z in range(nz)], axis=-1)
        cine_volume[..., t] = vol
        if t + 1 in (ed, es):
            frames[t + 1] = (vol, labels)
    if cine:
        nib.save(nib.Nifti1Image(cine_volume, affine), d / f"{pid}_4d.nii.gz")
    for f, (vol, labels) in frames.items():
        stem = f"{pid}_frame{f:02d}"
        nib.save(nib.Nifti1Image(vol, affine), d / f"{stem}.nii.gz")
        nib.save(nib.Nifti1Image(labels, affine), d / f"{stem}_gt.nii.gz")
        sc = np.stack([_scribble(labels[:, :, z], rng) for z in range(labels.shape[2])], axis=-1)
        nib.save(nib.Nifti1Image(sc, affine), d / f"{stem}_scribble.nii.gz")
    height = round(float(rng.uniform(155, 195)), 1)
    weight = round(float(rng.uniform(50, 110)), 1)
    (d / "Info.cfg").write_text(f"ED: {ed}\nES: {es}\nGroup: {group}\nHeight: {height}\n"
                                f"NbFrame: {nb_frames}\nWeight: {weight}\n")


def write_acdc_phantoms(out: str | Path, patients: int = 10, seed: int = 0, overwrite: bool = False,
                        start: int = 1, cine: bool = True) -> list[Path]:
    """Write ``patients`` phantom patients under ``out/training/``; returns their folders."""
    out = Path(out)
    check_output_folder(out, overwrite)
    training = out / "training"
    training.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(patients):
        number = start + i
        write_patient(training, number, np.random.default_rng([seed, number]), cine=cine)
        paths.append(training / f"patient{number:03d}")
    return paths
