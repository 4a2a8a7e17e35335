"""A model's plan: how the images it was trained on were made (nnU-Net keeps its plans with the model).

``train run`` writes the plan of its store into every checkpoint (key ``plan``)::

    {"source": "acdc", "size": [112, 112], "spacing_mm": [3.02, 3.02],
     "normalization": "percentile_iqr:5-95", "classes": ["background", "RV", "MYO", "LV"],
     "channels": 1, "image_dtype": "float32"}

``source`` is the store's ``source_dataset`` attr (the converter), ``size`` its ``image_size``,
``spacing_mm`` the in-plane spacing of its stored pixels (``meta/spacing``; null where samples have
none, e.g. letterboxed 2D images, or where it varies, e.g. CAMUS), ``normalization`` the images'
``normalization`` attr, ``image_dtype`` that of ``images``. ``train eval`` and ``train predict``
compare a store's plan with the checkpoint's (:func:`check`): another size, spacing, normalisation,
class list or channel count stops them with both values named; another image dtype (float16 for
float32: every reader casts, values within 2^-11) is a note. ``train predict --input`` applies the
plan to new scans (``train/scans.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from datakit.errors import DatakitError
from datakit.store import Store

KEYS: dict[str, type | tuple[type, ...]] = {
    "source": str, "size": list, "spacing_mm": (list, type(None)), "normalization": str, "classes": list,
    "channels": int, "image_dtype": str,
}
# compared between a checkpoint and a store: a difference stops eval / predict
COMPARED = ("size", "spacing_mm", "normalization", "classes", "channels")
SPACING_RTOL = 1e-3


def store_plan(store: Store) -> dict[str, Any]:
    """The plan of ``store`` (see the module doc)."""
    sp = np.asarray(store.meta["spacing"], np.float64).reshape(-1, 2)
    uniform = len(sp) and np.isfinite(sp).all() and np.allclose(sp, sp[0], rtol=1e-4)
    norm = store.file["images"].attrs.get("normalization", "")
    return {
        "source": str(store.attrs.get("source_dataset", "")),
        "size": [int(x) for x in store.image_size],
        "spacing_mm": [round(float(x), 4) for x in sp[0]] if uniform else None,
        "normalization": norm.decode() if isinstance(norm, bytes) else str(norm),
        "classes": list(store.classes),
        "channels": int(store.channels),
        "image_dtype": str(store.file["images"].dtype),
    }


def check_record(plan: object, path: Path) -> None:
    """A checkpoint's ``plan`` entry: a mapping with every key of :data:`KEYS` of the right type."""
    if not isinstance(plan, dict):
        raise DatakitError(f"plan: expected a mapping, found {type(plan).__name__}", path)
    for key, kind in KEYS.items():
        if key not in plan:
            raise DatakitError(f"plan has no {key!r}", path)
        if isinstance(plan[key], bool) or not isinstance(plan[key], kind):
            raise DatakitError(f"plan {key} = {plan[key]!r}: not a {getattr(kind, '__name__', 'list or null')}", path)


def _show(key: str, value: Any) -> str:
    if key == "spacing_mm":
        return "none (2D letterboxed or varying)" if value is None else " x ".join(f"{v:g}" for v in value) + " mm"
    if key == "size":
        return " x ".join(str(v) for v in value) + " px"
    return str(value)


def _same(key: str, a: Any, b: Any) -> bool:
    if key == "spacing_mm" and a is not None and b is not None:
        return len(a) == len(b) and all(math.isclose(x, y, rel_tol=SPACING_RTOL) for x, y in zip(a, b, strict=True))
    return a == b


def differences(trained: dict[str, Any], here: dict[str, Any], keys: tuple[str, ...] = COMPARED) -> list[str]:
    """'key: A here, B in the checkpoint' for every compared key that differs."""
    return [f"{k}: {_show(k, here[k])} here, {_show(k, trained[k])} in the checkpoint"
            for k in keys if not _same(k, trained[k], here[k])]


def convert_hint(plan: dict[str, Any]) -> str:
    """The convert options that give a store this plan (those that the plan fixes)."""
    opts = []
    if plan["spacing_mm"] is not None:
        opts.append(f"--spacing {plan['spacing_mm'][0]:g}")
    opts.append(f"--size {plan['size'][0]}")
    try:
        opts.append(f"--norm {norm_method(plan['normalization'])}")
    except DatakitError:
        pass
    if plan["image_dtype"] == "float16":
        opts.append("--image-dtype float16")
    return " ".join(opts)


def norm_method(normalization: str) -> str:
    """The ``--norm`` method whose recorded name is ``normalization`` (percentile_iqr:5-95 -> percentile-iqr)."""
    from datakit.normalize import NORMALIZERS, normalizer_name

    for method in NORMALIZERS:
        if normalizer_name(method) == normalization:
            return method
    raise DatakitError(f"the checkpoint's plan names normalisation {normalization!r}, which this datakit "
                       f"does not know ({', '.join(normalizer_name(m) for m in NORMALIZERS)})")


def check(trained: dict[str, Any] | None, store: Store, checkpoint: Path, log: Callable[[str], None]) -> None:
    """Stop (DatakitError naming both values) where ``store`` was made otherwise than the store the
    checkpoint was trained on; a note where the checkpoint records no plan or another image dtype."""
    if trained is None:
        log(f"note: checkpoint {checkpoint} records no plan (written before plans were): the store's classes, "
            "channels and image size are checked, its spacing and normalisation cannot be")
        return
    here = store_plan(store)
    diff = differences(trained, here)
    if diff:
        raise DatakitError(f"the store was made otherwise than the one checkpoint {checkpoint} was trained on: "
                           + "; ".join(diff) + f" (convert the source with {convert_hint(trained)})", store.path)
    if here["image_dtype"] != trained["image_dtype"]:
        log(f"note: the store's images are {here['image_dtype']}, the checkpoint was trained on "
            f"{trained['image_dtype']} images (readers cast to float32; values differ by at most 2^-11)")
