"""``Key: Value`` configuration files (ACDC ``Info.cfg``, CAMUS ``Info_{VIEW}.cfg``)."""

from __future__ import annotations

import math
from pathlib import Path

from datakit.errors import DatakitError
from datakit.safe_io import read_text

MAX_FRAME = 100_000  # a frame number beyond this is a broken file, not a recording


def read_cfg(path: Path) -> dict[str, str]:
    """``Key: Value`` lines, no section header; blank lines ignored; a stray line is an error."""
    # regular files only (a FIFO would block); "-sig": tolerate a byte-order mark
    text = read_text(path, path.name, encoding="utf-8-sig", limit=1 << 20)
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            raise DatakitError(f"line {n} is not 'Key: Value': {line.strip()[:60]!r}", path)
        out[key.strip()] = value.strip()
    return out


def cfg_number(info: dict[str, str], key: str, path: Path) -> float | None:
    """A numeric value (int or float text); None when the key is absent or empty."""
    if info.get(key, "") == "":
        return None
    try:
        value = float(info[key])
    except ValueError:
        raise DatakitError(f"{key} is not a number: {info[key]!r}", path) from None
    if not math.isfinite(value) or abs(value) > 1e12:
        raise DatakitError(f"{key} is not a finite number: {info[key]!r}", path)
    return value


def cfg_frame(info: dict[str, str], key: str, path: Path) -> int:
    """A required 1-based frame number (ED, ES)."""
    value = cfg_number(info, key, path)
    if value is None:
        raise DatakitError(f"no {key} frame number", path)
    if value != int(value) or not 1 <= value <= MAX_FRAME:
        raise DatakitError(f"{key} must be a 1-based frame number (1-{MAX_FRAME}), not {info[key]!r}", path)
    return int(value)
