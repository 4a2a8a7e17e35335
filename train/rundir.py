"""A run directory: the files ``train run`` writes, and how a run starts, resumes or replaces an earlier
one without losing work.

- Every file is written whole or not at all: ``config.toml``, ``provenance.json`` and a resumed
  ``metrics.jsonl`` go through a temporary and a rename (``datakit.safe_io``), so a kill during a
  rewrite leaves the previous version.
- ``metrics.jsonl`` is appended one flushed line per row; a line torn by a crash or a full disk is
  dropped when the run resumes (and the run says so); a damaged line elsewhere is refused, named.
- ``--overwrite`` of an earlier run builds the new run beside it, in a hidden folder inside RUN_DIR,
  and swaps it in at its first checkpoint: a run that fails before then (a bad option, no GPU, a NaN
  at the first steps, Ctrl-C) leaves the earlier run as it was. Only the files a run writes are
  replaced; anything else in RUN_DIR stays.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from datakit.errors import DatakitError
from datakit.safe_io import remove_stale_temporaries, temporary_name, write_file

RUN_FILES = ("checkpoints", "tb", "metrics.jsonl", "config.toml", "provenance.json", "postprocessing.json")


def check_run_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to mix runs: a non-empty RUN_DIR needs --resume or --overwrite."""
    if resume:
        if not (out / "checkpoints" / "last.pt").is_file():
            raise DatakitError("--resume: no checkpoints/last.pt to resume from", out)
        return
    if out.exists() and not out.is_dir():
        raise DatakitError("exists and is not a directory", out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DatakitError("run directory is not empty; pass --overwrite to replace it or --resume to continue",
                           out)


class RunDir:
    """Where a run writes: RUN_DIR itself, or (``--overwrite`` of an earlier run) a staging folder in it
    until :meth:`publish`. Creates nothing until :meth:`create`."""

    def __init__(self, out: Path, overwrite: bool = False):
        self.final = out
        self.staging: Path | None = None
        if overwrite and out.is_dir() and any((out / name).exists() for name in RUN_FILES):
            self.staging = out / temporary_name(out / "run")

    @property
    def path(self) -> Path:
        return self.staging if self.staging is not None else self.final

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def create(self) -> None:
        self.final.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.final / "run")  # staging folders of runs that were killed
        self.path.mkdir(exist_ok=True)

    def publish(self) -> None:
        """The new run has its first checkpoint: remove the earlier run's files and move the new ones in."""
        if self.staging is None:
            return
        for name in RUN_FILES:
            old = self.final / name
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            elif old.exists() or old.is_symlink():
                old.unlink()
        for child in self.staging.iterdir():  # renames within one folder: open files keep writing
            os.replace(child, self.final / child.name)
        self.staging.rmdir()
        self.staging = None

    def abandon(self) -> None:
        """The run failed before its first checkpoint: drop what it staged; the earlier run stays."""
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)

    def write(self, name: str, text: str) -> None:
        write_file(self.path / name, text)

    def truncate_metrics(self, step: int, log: Callable[[str], None]) -> None:
        """On resume, keep the rows logged up to ``step`` (the checkpoint's); later steps are about to be
        run again. A torn last line is dropped, with a note; a damaged line elsewhere is an error."""
        path = self.path / "metrics.jsonl"
        if not path.is_file():
            return
        lines = path.read_text(errors="replace").splitlines()
        keep = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                at = int(row["step"])
            except (ValueError, KeyError, TypeError):
                if n == len(lines):
                    log(f"note: {path}: dropped its last line, torn by the interruption ({line[:60]!r})")
                    continue
                raise DatakitError(f"line {n} is not a metrics row ({line[:60]!r}); the log is damaged", path) from None
            if at <= step:
                keep.append(line)
        write_file(path, "".join(line + "\n" for line in keep))
