"""What the Unity tests share (a plain module: tests import it, never a conftest): the splines-to-masks
command, the files a conversion leaves, a store's notes, a label of an annotation entry."""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
from typer.testing import CliRunner, Result

from datakit.cli import app

runner = CliRunner()
HEX = re.compile(r"^[0-9a-f]{64}$")  # a video's code


def convert(src: Path, out: Path, *extra: str) -> Result:
    return runner.invoke(app, ["splines-to-masks", "unity", str(src), "--out", str(out), "-j", "1", *extra])


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix in (".h5", ".tmp") or p.name.endswith(".tmp"))


def notes_of(f: h5py.File) -> list[str]:
    raw = f.attrs["notes"]
    return json.loads(raw) if isinstance(raw, str) else list(raw)  # an empty list is stored as an array


def label_instance(entry: dict, label: str) -> dict:
    value = entry["labels"][label]
    return value[0] if isinstance(value, list) else value
