"""Paired comparison of evaluations (``train compare EVAL.json ...``): a table for a paper, box plots.

Each input is the JSON of ``train eval`` on the same store (its content fingerprint,
:func:`datakit.store.identity.fingerprint`) and split; others are refused, naming both. Per run and
class (and the class mean), over **patients** (a patient's value is the mean over its volumes, e.g.
ACDC's ED and ES; NaN-skipping, as ``train eval``'s means):

- the mean, with a 95 % bootstrap interval (percentiles 2.5 and 97.5 of the means of ``resamples``
  resamplings of the patients with replacement, numpy's seeded generator);
- the two-sided Wilcoxon signed-rank p-value against the reference run (``scipy.stats.wilcoxon``,
  paired by patient, over the patients where both runs have a value; 1.0 where every difference is 0).

Scores: the ``postprocessed`` block of each eval where every input has one (``--scores auto``), else
the raw scores; ``--scores raw|postprocessed`` chooses. Run names: the eval's ``name`` (the run
folder or checkpoint), else the file's stem; the file stems where names clash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from datakit.errors import DatakitError
from train.choices import SCORES

METRICS = {"dice": "Dice", "hd95_mm": "HD95 mm"}
RESAMPLES = 10000
SEED = 0


@dataclass
class Run:
    name: str
    path: Path
    res: dict[str, Any]  # the whole eval JSON
    scores: dict[str, Any]  # the block compared: the raw top level or "postprocessed"


def read_eval(path: Path) -> dict[str, Any]:
    """An eval JSON, with the keys compare needs, or a DatakitError naming the file and the key."""
    from datakit.safe_io import regular_file

    regular_file(path, "eval JSON")
    try:
        res = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise DatakitError(f"not valid JSON ({e})", path) from None
    if not isinstance(res, dict):
        raise DatakitError("not a train eval JSON (not an object)", path)
    for key in ("split", "per_patient", "dice"):
        if key not in res:
            raise DatakitError(f"not a train eval JSON: no {key!r} key", path)
    if "store_fingerprint" not in res:
        raise DatakitError("no 'store_fingerprint' key (written by an older train eval): evaluate again, so that "
                           "evaluations of different stores cannot be compared by mistake", path)
    if not isinstance(res["per_patient"], list) or not res["per_patient"]:
        raise DatakitError("per_patient: no volumes", path)
    return res


def load_runs(paths: list[Path], scores: str = "auto") -> tuple[list[Run], str]:
    """The runs to compare (same store and split, checked) and which scores they give ('raw' or 'postprocessed')."""
    if scores not in SCORES:
        raise DatakitError(f"--scores must be {', '.join(SCORES)}, not {scores!r}")
    if len(paths) < 2:
        raise DatakitError("give at least two eval JSON files to compare")
    evals = [(p, read_eval(p)) for p in paths]
    p0, r0 = evals[0]
    for p, r in evals[1:]:
        for key, what in (("store_fingerprint", "store"), ("split", "split")):
            if r[key] != r0[key]:
                raise DatakitError(f"{p} and {p0} are evaluations of different {what}s: {what} "
                                   f"{r[key]!r} ({r.get('store', '?')}) and {r0[key]!r} ({r0.get('store', '?')}); "
                                   "paired comparisons need the same patients", p)
        if set(r["dice"]) != set(r0["dice"]):
            raise DatakitError(f"classes {sorted(r['dice'])} differ from {sorted(r0['dice'])} of {p0}", p)
    have_pp = all(isinstance(r.get("postprocessed"), dict) for _, r in evals)
    if scores == "postprocessed" and not have_pp:
        missing = next(p for p, r in evals if not isinstance(r.get("postprocessed"), dict))
        raise DatakitError("--scores postprocessed: this eval has no postprocessed block (train eval --postprocess "
                           "none, or a checkpoint without a decision: use --postprocess auto or lcc)", missing)
    used = "postprocessed" if scores == "postprocessed" or (scores == "auto" and have_pp) else "raw"
    names = [str(r.get("name") or p.stem) for p, r in evals]
    if len(set(names)) < len(names):
        names = [p.stem for p, _ in evals]
    if len(set(names)) < len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DatakitError(f"two evals are both named {dup!r} (eval name and file stem): rename one file")
    runs = [Run(n, p, r, r["postprocessed"] if used == "postprocessed" else r) for n, (p, r) in zip(names, evals,
                                                                                                  strict=True)]
    return runs, used


def classes_of(run: Run) -> list[str]:
    return [c for c in run.scores["dice"] if c != "mean"]


def patient_values(run: Run, metric: str) -> dict[str, dict[str, float]]:
    """class (and "mean") -> patient -> the mean of that patient's volumes (NaN when none has a value)."""
    classes = classes_of(run)
    by_patient: dict[str, list[dict[str, Any]]] = {}
    for row in run.scores["per_patient"]:
        key = f"{row.get('dataset', '')}/{row['patient']}" if row.get("dataset") else str(row["patient"])
        by_patient.setdefault(key, []).append(row)

    def num(v: Any) -> float:
        return float(v) if isinstance(v, (int, float)) and v is not None else float("nan")

    out: dict[str, dict[str, float]] = {c: {} for c in [*classes, "mean"]}
    for pid, rows in by_patient.items():
        per_class = np.array([[num(r.get(metric, {}).get(c)) for c in classes] for r in rows], np.float64)
        with np.errstate(all="ignore"):
            vol_means = [float(np.nanmean(v)) if np.isfinite(v).any() else np.nan for v in per_class]
            for j, c in enumerate(classes):
                col = per_class[:, j]
                out[c][pid] = float(np.nanmean(col)) if np.isfinite(col).any() else np.nan
            vm = np.array(vol_means)
            out["mean"][pid] = float(np.nanmean(vm)) if np.isfinite(vm).any() else np.nan
    return out


def bootstrap(values: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED) -> tuple[float, float, float]:
    """(mean, low, high): the mean of ``values`` (finite ones) and its 95 % percentile bootstrap interval."""
    v = values[np.isfinite(values)]
    if not len(v):
        return np.nan, np.nan, np.nan
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(resamples, len(v)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(v.mean()), float(lo), float(hi)


def wilcoxon(a: np.ndarray, b: np.ndarray) -> tuple[float | None, int]:
    """(two-sided p, pairs) of the paired signed-rank test over pairs where both are finite."""
    from scipy.stats import wilcoxon as scipy_wilcoxon

    ok = np.isfinite(a) & np.isfinite(b)
    x, y = a[ok], b[ok]
    if not len(x):
        return None, 0
    if np.all(x == y):
        return 1.0, int(len(x))
    return float(scipy_wilcoxon(x, y).pvalue), int(len(x))


def compare(runs: list[Run], reference: str | None = None, resamples: int = RESAMPLES,
            seed: int = SEED) -> dict[str, Any]:
    """Every run's mean and interval per class and metric, and the p-value against the reference."""
    names = [r.name for r in runs]
    ref_name = reference if reference is not None else names[0]
    if ref_name not in names:
        raise DatakitError(f"--reference {ref_name!r} is none of the runs: {', '.join(names)}")
    ref = runs[names.index(ref_name)]
    classes = [*classes_of(ref), "mean"]
    values = {(run.name, metric): patient_values(run, metric) for run in runs for metric in METRICS}
    rows = []
    for run in runs:
        for c in classes:
            row: dict[str, Any] = {"run": run.name, "class": c}
            for metric in METRICS:
                mine, theirs = values[run.name, metric][c], values[ref.name, metric][c]
                pids = sorted(set(mine) | set(theirs))
                a = np.array([mine.get(p, np.nan) for p in pids])
                b = np.array([theirs.get(p, np.nan) for p in pids])
                mean, lo, hi = bootstrap(a, resamples, seed)
                p, n = (None, 0) if run is ref else wilcoxon(a, b)
                row[metric] = {"mean": mean, "low": lo, "high": hi, "patients": int(np.isfinite(a).sum()),
                               "p": p, "pairs": n, "values": a.tolist()}
            rows.append(row)
    return {"reference": ref_name, "classes": classes, "rows": rows, "resamples": resamples, "seed": seed,
            "patients": len(values[ref.name, "dice"]["mean"])}


def _num(v: float, nd: int) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.{nd}f}"


def _p(p: float | None) -> str:
    if p is None:
        return "-"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def markdown(result: dict[str, Any], runs: list[Run], used: str) -> str:
    """The comparison as a Markdown table with a caption line (what, on what, how)."""
    r0 = runs[0].res
    ref = result["reference"]
    caption = (f"{used} scores on split {r0['split']} of store {Path(str(r0.get('store', '?'))).name} "
               f"(fingerprint {r0['store_fingerprint']}), {result['patients']} patients. Mean over patients (each "
               f"the mean of its volumes) [95 % bootstrap interval, {result['resamples']} resamples, seed "
               f"{result['seed']}]; p: two-sided Wilcoxon signed-rank test against {ref}, paired by patient.")
    lines = [caption, "",
             "| run | class | Dice | p (Dice) | HD95 mm | p (HD95) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in result["rows"]:
        d, h = row["dice"], row["hd95_mm"]
        ref_cell = "ref" if row["run"] == ref else None
        lines.append(f"| {row['run']} | {row['class']} | {_num(d['mean'], 3)} [{_num(d['low'], 3)}, "
                     f"{_num(d['high'], 3)}] | {ref_cell or _p(d['p'])} | {_num(h['mean'], 1)} [{_num(h['low'], 1)}, "
                     f"{_num(h['high'], 1)}] | {ref_cell or _p(h['p'])} |")
    return "\n".join(lines) + "\n"


def box_plots(result: dict[str, Any], used: str, f: BinaryIO) -> None:
    """One PNG: a row per metric (Dice, HD95), a panel per class, a box per run over the patients."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = result["classes"]
    runs = list(dict.fromkeys(r["run"] for r in result["rows"]))
    many = len(runs) > 4  # names slanted more, each box given room, so that a dozen runs stay legible
    fig, axes = plt.subplots(len(METRICS), len(classes), squeeze=False,
                             figsize=(max(3.2, 0.4 * len(runs)) * len(classes), (4.2 if many else 3.4) * len(METRICS)))
    for i, (metric, label) in enumerate(METRICS.items()):
        for j, c in enumerate(classes):
            ax = axes[i][j]
            data = []
            for name in runs:
                row = next(r for r in result["rows"] if r["run"] == name and r["class"] == c)
                v = np.asarray(row[metric]["values"], np.float64)
                data.append(v[np.isfinite(v)])
            ax.boxplot(data, showmeans=True)
            ax.set_xticks(range(1, len(runs) + 1), runs, rotation=60 if many else 20, ha="right" if many else "center")
            ax.set_title(f"{c}: {label}", fontsize=10)
            ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{used} scores per patient ({result['patients']} patients; reference {result['reference']})",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
