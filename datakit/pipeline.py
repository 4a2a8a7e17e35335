"""The conversion pipeline every converter shares: read items in parallel, synthesise scribbles
from the stored masks, compress in the workers, write with one writer, split by patient.

Errors: a :class:`DatakitError` from one item stops the conversion (nothing is left behind: the
writer's temporary file is removed) unless ``on_error="skip"``, which records the patient and the
reason in the output and in the store's ``skipped`` attribute.
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from datakit.constants import default_workers
from datakit.errors import DatakitError
from datakit.progress import progress_bar
from datakit.scribbles import check_params, sample_seed, synthesize
from datakit.sources.base import ItemResult, Source
from datakit.splits import SplitResult, check_split_spec, make_splits
from datakit.store.chunks import ImageFormat
from datakit.store.writer import EncodedSample, StoreWriter, encode_sample, patient_columns, writing


@dataclass(frozen=True)
class SynthSpec:
    """``--scribbles synth:ALGO``: scribbles drawn from each stored mask."""

    algo: str
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"synthetic:{self.algo}"


@dataclass
class ConvertOptions:
    out: Path
    overwrite: bool = False
    workers: int = 0  # 0: one per CPU
    on_error: str = "stop"  # or "skip"
    split: str | None = None  # None: the source's default
    ratios: tuple[float, ...] = (0.7, 0.15, 0.15)
    seed: int = 0
    synth: SynthSpec | None = None
    command: str = ""
    progress: bool | None = None  # None: when stderr is a terminal
    image_format: ImageFormat = field(default_factory=ImageFormat)  # float16 / gzip: smaller stores


@dataclass
class ConversionReport:
    out: Path
    samples: int
    patients: int
    seconds: float
    skipped: list[dict[str, str]]
    splits: dict[str, int]
    notes: list[str]

    def summary(self) -> str:
        """One line for the terminal (skipped patients are listed separately, one line each)."""
        parts = ", ".join(f"{k} {v}" for k, v in self.splits.items())
        return (f"wrote {self.out}: {self.samples} samples, {self.patients} patients"
                f"{f' ({parts})' if parts else ''}, {len(self.skipped)} skipped, {self.seconds:.1f} s")


def process_item(source: Source, item: Any, synth: SynthSpec | None,
                 image_format: ImageFormat = ImageFormat()) -> tuple[ItemResult, list[EncodedSample]]:
    """Worker body: read one item, add synthetic scribbles, compress its chunks."""
    result = source.read(item)
    if synth is not None:
        k = len(source.classes)
        for s in result.samples:
            seed = sample_seed(synth.seed, vars(s))
            s.scribble = synthesize(s.mask, k, synth.algo, seed, **synth.params)
            s.scribble_source = synth.label
    encoded = [encode_sample(s, image_format) for s in result.samples]
    result.samples = []  # arrays travel compressed, not twice
    return result, encoded


def _safe_process(source: Source, item: Any, synth: SynthSpec | None, image_format: ImageFormat):
    try:
        return process_item(source, item, synth, image_format), None
    except DatakitError as e:
        return None, str(e)
    except Exception as e:  # noqa: BLE001 - an unexpected failure still names the patient
        return None, f"unexpected {type(e).__name__}: {e}"


def _reuse_freed_memory() -> None:
    """Let glibc's malloc keep freed blocks of up to 256 MB for reuse (inherited by forked workers).

    Every patient allocates and frees volume-sized arrays; with the default thresholds each one
    is a fresh mmap whose pages fault in again, which cost about half the workers' system time.
    Peak memory is unchanged: the same blocks are reused instead of returned and re-requested.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (e.g. musl): keep the defaults
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 256 << 20)
    libc.mallopt(m_trim_threshold, 512 << 20)


def _executor(source: Source, synth: SynthSpec | None, workers: int) -> Executor:
    """Threads where the work runs outside the GIL, else processes.

    A source whose decoding and resampling happen in C (ISA-L, numpy, scipy's sparse kernels) says
    so with ``releases_gil = True``: threads then skip pickling every sample between processes
    (about 15 % of ACDC's conversion time). Scribble synthesis is Python-heavy, so it keeps processes.
    """
    if source.releases_gil and synth is None:
        return ThreadPoolExecutor(max_workers=workers)
    return process_pool(workers)


def process_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes, forked where the platform allows (they inherit the imported modules: a fast
    start; they never touch an open store file), each killed when this process dies."""
    ctx = get_context("fork") if sys.platform.startswith("linux") else None
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_die_with_parent,
                               initargs=(os.getpid(),))


def _die_with_parent(parent: int) -> None:
    """Worker initialiser: killed (SIGKILL) when the converting process dies, even by ``kill -9``, so no
    worker lingers holding files; SIGTERM / SIGINT are left to the parent, which shuts the pool down."""
    import signal

    from datakit.processes import die_with_parent

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent(parent)


def _results(source: Source, items: list[Any], synth: SynthSpec | None, workers: int,
             image_format: ImageFormat) -> Iterator[tuple[Any, Any, str | None]]:
    """(item, result, error) in item order; at most 2 x workers items in flight (bounded memory)."""
    if workers <= 1 or len(items) <= 1:
        for item in items:
            yield (item, *_safe_process(source, item, synth, image_format))
        return
    _reuse_freed_memory()
    pool = _executor(source, synth, workers)
    try:
        pending: deque[tuple[Any, Future]] = deque()
        it = iter(items)
        for item in it:
            pending.append((item, pool.submit(_safe_process, source, item, synth, image_format)))
            if len(pending) >= 2 * workers:
                break
        while pending:
            item, fut = pending.popleft()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(_safe_process, source, nxt, synth, image_format)))
            yield (item, *fut.result())
    except BaseException:  # stopped early (error, Ctrl-C, SIGTERM, generator closed): drop the queued items
        _stop(pool)
        raise
    else:
        pool.shutdown(wait=True)


def _stop(pool: Executor) -> None:
    """Cancel what has not started; worker processes are ended now rather than after their item."""
    processes = list((pool._processes or {}).values()) if isinstance(pool, ProcessPoolExecutor) else []
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        if p.is_alive():
            p.terminate()
    for p in processes:
        p.join(timeout=5)


def convert(source: Source, opts: ConvertOptions, log=print) -> ConversionReport:
    """Run a conversion end to end; returns a report, raises DatakitError on bad input. The store's
    exclusive lock is held throughout (a second conversion into the same ``out`` is refused)."""
    with writing(opts.out, opts.overwrite):
        return _convert(source, opts, log)


def _convert(source: Source, opts: ConvertOptions, log) -> ConversionReport:
    t0 = time.perf_counter()
    if opts.on_error not in ("stop", "skip"):
        raise DatakitError(f"--on-error must be stop or skip, not {opts.on_error!r}")
    _check_split_available(source, opts.split or source.default_split())  # not after a whole conversion
    if opts.synth is not None:
        check_params(opts.synth.algo, opts.synth.params)  # unknown name or bad parameter: before any work
    items = source.items()
    if not items:
        raise DatakitError(f"no {source.name} patients found", getattr(source, "root", None))
    workers = opts.workers or default_workers()
    skipped: list[dict[str, str]] = []
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    results = _results(source, items, opts.synth, min(workers, len(items)), opts.image_format)
    with closing(results), StoreWriter(opts.out, classes=source.classes, image_size=source.image_size,
                     channels=source.channels, command=opts.command, overwrite=opts.overwrite,
                     normalization=source.normalization, keypoint_names=source.keypoint_names,
                     attrs={"source_dataset": source.name},
                     image_format=opts.image_format) as writer, progress_bar(opts.progress) as bar:
        task = bar.add_task(f"converting {source.name}", total=len(items))
        for item, res, err in results:
            bar.advance(task)
            if err is not None:
                if opts.on_error == "stop":
                    raise DatakitError(err if item.patient in err else f"patient {item.patient}: {err}")
                skipped.append({"patient": item.patient, "reason": err})
                continue
            result, encoded = res
            notes += result.warnings  # also those of a patient with no samples (e.g. a source's listing notes)
            if not encoded:
                skipped.append({"patient": item.patient, "reason": "no samples"})
                continue
            writer.append(encoded)
            rows.append(result.patient)
        if writer.n == 0:
            raise DatakitError(f"no sample converted ({len(skipped)} patient(s) skipped)", opts.out)
        split = _split(source, opts, rows)
        notes += split.notes
        notes += _source_notes(source, opts, notes)
        indices = split.sample_indices(writer.patients_of_samples)
        writer.set_patients(patient_columns(rows))
        writer.set_splits(indices, method=split.method, seed=split.seed, ratios=split.ratios)
        writer.set_attr("skipped", skipped)
        writer.set_attr("notes", notes)
        if opts.synth is not None:
            writer.set_attr("scribble_synthesis", {"algo": opts.synth.algo, "seed": opts.synth.seed,
                                                   **opts.synth.params})
        n, n_patients = writer.n, len(rows)
    for note in notes:
        log(note)
    return ConversionReport(opts.out, n, n_patients, time.perf_counter() - t0, skipped,
                            {k: len(v) for k, v in indices.items()}, notes)


def _check_split_available(source: Source, spec: str) -> None:
    """A malformed ``--split``, or ``official`` where the source ships none, fails before any work."""
    check_split_spec(spec)
    if spec == "official" and source.default_split() != "official":
        where = source.official_split_from
        raise DatakitError(f"{source.name} ships no official split{f' (no {where} found)' if where else ''}; "
                           f"use random, stratified[:column], kfold:K/FOLD or file:PATH")


def _source_notes(source: Source, opts: ConvertOptions, notes: list[str]) -> list[str]:
    """A source's own last words, if it has any: which split it used and why (``split_note(spec)``),
    and a summary of its notes (``summary_notes(notes)``, e.g. Unity's degenerate labels)."""
    note = source.split_note(opts.split or source.default_split())
    return ([note] if note else []) + source.summary_notes(notes)


def _split(source: Source, opts: ConvertOptions, rows: list[dict[str, Any]]) -> SplitResult:
    spec = opts.split or source.default_split()
    ids = [r["id"] for r in rows]
    if spec == "official":  # the split the source ships (sub-folders, split lists, ...)
        return source.official_split(ids)
    strata = {k: ["" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
                  for v in col] for k, col in patient_columns(rows).items()}
    return make_splits(spec, ids, strata=strata, default_column=source.stratify_column,
                       ratios=opts.ratios, seed=opts.seed)
