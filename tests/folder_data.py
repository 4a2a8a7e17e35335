"""Generated image/mask folders in the layouts real datasets ship (Kvasir-SEG, LGG, chest X-ray)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def disc(h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def grey_image(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 40, (h, w)) + 150 * disc(h, w, h / 2, w / 3, min(h, w) / 4)).astype(np.uint8)


def write_pairs(root: Path, names: list[str], *, size: tuple[int, int] = (40, 48), ext: str = ".png",
                mask_ext: str | None = None, rgb: bool = False, mask_scale: int = 255, seed: int = 0) -> list[float]:
    """``root/images/X<ext>`` + ``root/masks/X<mask_ext>``; masks 0 / ``mask_scale``; returns foreground fractions."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    fractions = []
    for i, name in enumerate(names):
        h, w = size
        m = disc(h, w, h / 2, w / 2, min(h, w) / (3 + i % 3))
        img = grey_image(h, w, seed + i)
        if rgb:
            img = np.stack([img, 255 - img, img // 2], axis=-1)
        Image.fromarray(img).save(root / "images" / f"{name}{ext}", quality=95)
        Image.fromarray((m * mask_scale).astype(np.uint8)).save(root / "masks" / f"{name}{mask_ext or ext}",
                                                                quality=90)
        fractions.append(float(m.mean()))
    return fractions



def small_store(path: Path, *, classes: list[str], masks: list[np.ndarray], patient_prefix: str = "p",
                keypoint_names: list[str] | None = None, dataset: str = "toy") -> Path:
    """A store written directly with StoreWriter: one sample and one patient per mask (split 2:1:rest)."""
    from datakit.sample import Sample, label_state_from_mask
    from datakit.store import StoreWriter

    h, w = masks[0].shape
    ids = [f"{patient_prefix}{i}" for i in range(len(masks))]
    with StoreWriter(path, classes=classes, image_size=(h, w), normalization="scale:1/255",
                     keypoint_names=keypoint_names) as wr:
        for i, m in enumerate(masks):
            kp = None if keypoint_names is None else np.array([[i + 1.0, 2.0, 1.0]] * len(keypoint_names), np.float32)
            state = label_state_from_mask(m, len(classes))
            wr.append([Sample(image=np.full((1, h, w), i / 10, np.float32), mask=m.astype(np.uint8),
                              scribble=np.full((h, w), 255, np.uint8), label_state=state,
                              dataset=dataset, patient=ids[i], keypoints=kp)])
        wr.set_patients({"id": ids})
        wr.set_splits({"train": [0, 1], "valid": [2], "test": list(range(3, len(masks)))}, method="random", seed=0,
                      ratios=[0.5, 0.25, 0.25])
    return path
