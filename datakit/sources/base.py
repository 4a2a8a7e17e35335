"""The small interface every source format implements, and the options they share.

A source lists its items (one per patient / subject: the unit splits never cut) and reads one
item into samples plus one row of patient facts. Everything after that (scribble synthesis,
compression, writing, splits) is the shared pipeline in :mod:`datakit.pipeline`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from datakit.constants import MIN_IMAGE_SIZE
from datakit.errors import DatakitError
from datakit.sample import Sample

if TYPE_CHECKING:
    from datakit.splits import SplitResult


@dataclass
class ItemResult:
    samples: list[Sample]
    patient: dict[str, Any]  # one row of patients/: must hold "id"
    warnings: list[str] = field(default_factory=list)


class Source(Protocol):
    """What the pipeline uses of a source. Sources derive from :class:`SourceBase`, which gives the
    optional members their defaults; each source is listed once in :mod:`datakit.sources.registry`."""

    name: str  # dataset name in meta/dataset, e.g. "acdc"
    classes: list[str]
    image_size: tuple[int, int]
    channels: int
    normalization: str  # recorded in images.attrs["normalization"]
    stratify_column: str | None  # default column for --split stratified
    keypoint_names: list[str] | None
    releases_gil: ClassVar[bool]
    official_split_from: ClassVar[str | None]

    def items(self) -> list[Any]: ...

    def read(self, item: Any) -> ItemResult: ...

    def default_split(self) -> str: ...

    def official_split(self, patient_ids: list[str]) -> SplitResult: ...

    def split_note(self, spec: str) -> str | None: ...

    def summary_notes(self, notes: list[str]) -> list[str]: ...


class SourceBase:
    """The optional members of :class:`Source`, with their defaults."""

    # True when read() spends its time in C code that releases the GIL: the pipeline then runs threads
    # instead of processes, saving the transfer of every sample.
    releases_gil: ClassVar[bool] = False
    # Where the split the source ships comes from (sub-folders, published lists), for the error when it
    # is absent; None: the source ships none. A source
    # with one defines official_split(), and its default_split() returns "official" exactly when that
    # split is present (datakit.splits.make_splits("official", ids, official=mapping) checks a plain
    # {split: [patient ids]} mapping the same way as a split file).
    official_split_from: ClassVar[str | None] = None

    def official_split(self, patient_ids: list[str]) -> SplitResult:
        raise DatakitError(f"{getattr(self, 'name', 'this source')} ships no official split")

    def split_note(self, spec: str) -> str | None:
        """Which split is used and why, said in the output and kept in the store's notes (None: nothing)."""
        return None

    def summary_notes(self, notes: list[str]) -> list[str]:
        """A summary of the conversion's notes, said at the end (e.g. Unity's degenerate labels)."""
        return []


def check_size(size: int) -> None:
    """``--size``: the stored image side (Typer checks the same bound on the command line)."""
    if size < MIN_IMAGE_SIZE:
        raise DatakitError(f"--size must be at least {MIN_IMAGE_SIZE}, not {size}")


def source_path(path: Path, root: Path) -> str:
    """``meta/source``: the file's path relative to the converted root (POSIX separators), or as given
    when it lies outside the root (e.g. scribbles from a separate folder)."""
    try:  # lexically first: resolving every component costs a syscall each, per file
        return path.relative_to(root).as_posix()
    except ValueError:
        pass
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def find_patient_folders(root: Path, pattern: re.Pattern[str], containers: Sequence[str]) -> list[Path]:
    """Patient folders (names matching ``pattern``) given a patient folder, a folder of them, or a
    release root whose ``containers`` (e.g. ``training``, ``database/testing``) hold them."""
    if not root.is_dir():
        raise DatakitError("not a folder", root)
    if pattern.match(root.name):
        return [root]

    def patients(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.is_dir() and pattern.match(p.name))

    direct = patients(root)
    if direct:
        return direct
    return [p for sub in containers if (root / sub).is_dir() for p in patients(root / sub)]
