"""Acceptance of the synthetic scribbles on real ACDC (../shared/data/acdc, manual scribbles
included): on the same stored slices, 100 % agreement with the mask, >= 95 % of class regions of
>= 50 px reached, per-class coverage within 0.3x - 3x of the manual scribbles'. A subset of
patients (one per ACDC group) keeps it fast; benchmarks/scribble_coverage.py runs all of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datakit.pipeline import ConvertOptions, convert
from datakit.scribbles import sample_seed, stored_identity, synthesize
from datakit.scribbles.quality import scribble_quality
from datakit.sources.acdc import AcdcSource
from datakit.store import Store, validate_store
from tests.helpers import shared_data

PATIENTS = ["patient001", "patient023", "patient047", "patient066", "patient088"]  # DCM HCM MINF NOR RV


@pytest.fixture(scope="module")
def real_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = shared_data("acdc") / "training"
    subset = tmp_path_factory.mktemp("acdc_real") / "patients"
    subset.mkdir()
    for p in PATIENTS:
        (subset / p).symlink_to(root / p, target_is_directory=True)  # read in place, never copied
    out = subset.parent / "manual.h5"
    convert(AcdcSource(subset), ConvertOptions(out=out, workers=1, progress=False, split="random"))
    assert validate_store(out) == []
    return out


@pytest.mark.parametrize("algo", ["skeleton", "randomwalk", "wsl4mis"])
def test_acceptance_window_on_real_acdc(real_store: Path, algo: str) -> None:
    with Store(real_store) as s:
        masks, manual = s.file["masks"][()], s.file["scribbles"][()]
        m = s.meta
        # the scribbles `convert --scribbles synth:ALGO` would draw (same per-sample seeds)
        synth = np.stack([synthesize(mask, len(s.classes), algo, sample_seed(0, stored_identity(m, i)))
                          for i, mask in enumerate(masks)])
        classes = s.classes
    ref = scribble_quality(masks, manual, classes)
    q = scribble_quality(masks, synth, classes)
    assert q.slices == ref.slices > 50
    assert (q.agree_px == q.scribble_px).all()
    assert (q.reached >= 0.95).all(), q.reached
    ratio = q.coverage_pct / ref.coverage_pct
    assert ((ratio >= 0.3) & (ratio <= 3)).all(), dict(zip(classes, ratio.round(2), strict=True))
