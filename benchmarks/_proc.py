"""Timing whole processes and the peak memory of their process trees (shared by the benchmarks)."""

from __future__ import annotations

import resource
import subprocess
import threading
import time
from pathlib import Path


def _tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and all its descendants, in KB (Linux /proc)."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total


def run_measured(cmd: list[str]) -> tuple[float, float, float]:
    """Run ``cmd``; return (wall s, peak MB of its process tree, CPU s of the tree: user + system).

    CPU seconds are what a shared, noisy machine distorts least: other load stretches wall time,
    and a program that uses both cores suffers from it more than a single-process one.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = [0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss_kb(proc.pid))
            time.sleep(0.02)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    t.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.decode()[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, peak[0] / 1024, cpu
