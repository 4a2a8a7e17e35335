"""Synthetic vs manual scribbles on the same stored ACDC slices (the acceptance figures of docs/scribbles.md).

    .venv/bin/python benchmarks/scribble_coverage.py [STORE.h5] [--patients N]

STORE.h5 is ACDC converted with its manual scribbles
(`datakit convert acdc ../shared/data/acdc --out /tmp/acdc_manual.h5`); it is made when absent.
Per class: agreement of scribble pixels with the mask, class regions of >= 50 px reached, mean
coverage (% of image pixels) and its ratio to the manual scribbles' (acceptance: 0.3x - 3x).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from datakit.scribbles import ALGORITHMS, get_algorithm, sample_seed, stored_identity, synthesize
from datakit.scribbles.quality import scribble_quality
from datakit.store import Store

REPO = Path(__file__).resolve().parents[1]


def manual_store(path: Path) -> Path:
    if not path.exists():
        from datakit.pipeline import ConvertOptions, convert
        from datakit.sources.acdc import AcdcSource

        convert(AcdcSource(REPO.parent / "shared" / "data" / "acdc"), ConvertOptions(out=path, progress=False))
    return path


def synthesize_all(store: Store, idx: np.ndarray, masks: np.ndarray, algo: str, seed: int = 0) -> np.ndarray:
    m = store.meta
    k = len(store.classes)
    return np.stack([synthesize(mask, k, algo, sample_seed(seed, stored_identity(m, i)))
                     for i, mask in zip(idx, masks, strict=True)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", nargs="?", default="/tmp/acdc_manual.h5", type=Path)
    ap.add_argument("--patients", type=int, default=0, help="first N patients only (0: all)")
    args = ap.parse_args()
    get_algorithm("skeleton")  # fill the registry
    with Store(manual_store(args.store)) as s:
        patients = s.meta["patient"]
        keep = sorted(set(patients))[:args.patients or None]
        idx = np.flatnonzero(np.isin(patients, keep))
        masks, manual = s.file["masks"][idx], s.file["scribbles"][idx]
        manual_q = scribble_quality(masks, manual, s.classes)
        print(f"{len(idx)} slices of {len(keep)} patients; coverage in % of image pixels, "
              f"ratio = synthetic / manual (acceptance 0.3 - 3)\n")
        print(f"{'scribbles':<11} {'class':<11} {'agree %':>8} {'regions reached %':>18} "
              f"{'coverage %':>11} {'ratio':>6}")
        rows = [("manual", manual_q, 0.0)]
        for algo in sorted(ALGORITHMS):
            t0 = time.perf_counter()
            q = scribble_quality(masks, synthesize_all(s, idx, masks, algo), s.classes)
            rows.append((algo, q, time.perf_counter() - t0))
        for name, q, sec in rows:
            for c, cls in enumerate(s.classes):
                ratio = q.coverage_pct[c] / manual_q.coverage_pct[c]
                print(f"{name:<11} {cls:<11} {100 * q.agreement[c]:8.2f} {100 * q.reached[c]:18.1f} "
                      f"{q.coverage_pct[c]:11.3f} {ratio:6.2f}")
            if sec:
                print(f"{'':<11} ({sec / len(idx) * 1000:.1f} ms per slice, synthesis + measurement)")


if __name__ == "__main__":
    main()
