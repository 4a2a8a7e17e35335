"""Start-up label check of ``train run``: the whole store's labels against only those a run reads.

    .venv/bin/python benchmarks/label_check.py --store acdc_maag.h5 [--rounds 5]

Prints the best of ``--rounds`` wall times (store opened each time) of ``check_label_values`` over
every mask and scribble of the store (what ``train run`` scanned before) and of ``train.cli``'s
``_check_labels`` for maag, pce and full (their streams' labels and the validation masks).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from datakit.store import Store
from datakit.store.check import check_label_values
from train.cli import _check_labels
from train.config import TrainConfig


def best(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    s = Store(a.store)
    print(f"store {a.store}: {len(s)} samples, splits {', '.join(f'{k} {len(v)}' for k, v in s.splits.items())}")
    whole = best(lambda: check_label_values(Store(a.store)), a.rounds)
    print(f"whole store (masks + scribbles of every sample): {whole:.3f} s")
    for method in ("maag", "pce", "full"):
        cfg = TrainConfig(store=a.store, out=Path("unused"), method=method)
        t = best(lambda: _check_labels(cfg), a.rounds)  # noqa: B023 - called at once
        print(f"train run --method {method}: the run's labels only:  {t:.3f} s ({whole / t:.1f}x less)")


if __name__ == "__main__":
    main()
