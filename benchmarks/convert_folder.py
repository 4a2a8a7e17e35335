"""Folder conversion, merge and nnU-Net export on the real folders in ../shared/data.

Prints ratios measured within one run (the machine is shared: absolute times are noise):
- convert folder with 2 workers vs 1 (lung_cxr, 32 JPEG pairs);
- merge copying compressed image chunks vs decoding and re-encoding them;
- seconds per sample of each step, for orientation.

    .venv/bin/python benchmarks/convert_folder.py [--repeat 3] [--acdc]

``--acdc`` also merges a converted ACDC store (1636 samples at 256 x 256), where the chunk copy matters.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from datakit.export.nnunet import export_nnunet
from datakit.merge import merge_stores
from datakit.pipeline import ConvertOptions, convert
from datakit.sources.acdc import AcdcSource
from datakit.sources.folder import FolderSource

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--acdc", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_folder_"))
    lung = DATA / "lung_cxr"

    def conv(workers: int, out: Path) -> None:
        src = FolderSource(lung, binarize=127, classes=["background", "lung"])
        convert(src, ConvertOptions(out=out, overwrite=True, workers=workers, progress=False), log=lambda m: None)

    t1 = best(lambda: conv(1, tmp / "lung.h5"), args.repeat)
    t2 = best(lambda: conv(2, tmp / "lung.h5"), args.repeat)
    print(f"convert folder lung_cxr (32 pairs): 1 worker {t1:.2f} s, 2 workers {t2:.2f} s, speed-up x{t1 / t2:.2f}")

    stores = [tmp / "lung.h5"]
    if args.acdc:
        acdc = tmp / "acdc.h5"
        convert(AcdcSource(DATA / "acdc", size=256), ConvertOptions(out=acdc, workers=2, progress=False),
                log=lambda m: None)
        stores.append(acdc)
    else:
        conv(1, tmp / "lung2.h5")
        stores.append(tmp / "lung2.h5")
    fast = best(lambda: merge_stores(stores, tmp / "m.h5", overwrite=True), args.repeat)
    slow = best(lambda: merge_stores(stores, tmp / "m.h5", overwrite=True, copy_compressed=False), args.repeat)
    n = sum(1 for _ in stores)
    print(f"merge {n} stores ({', '.join(p.name for p in stores)}): chunk copy {fast:.2f} s, "
          f"re-encode {slow:.2f} s, speed-up x{slow / fast:.2f}")

    def export() -> None:
        export_nnunet(tmp / "lung.h5", tmp, 501, "Lung", overwrite=True)

    te = best(export, args.repeat)
    print(f"export nnunet lung_cxr (32 PNG cases): {te:.2f} s, {1000 * te / 32:.1f} ms per case")


if __name__ == "__main__":
    main()
