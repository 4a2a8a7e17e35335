"""``Key: Value`` configuration files (ACDC ``Info.cfg``, CAMUS ``Info_{VIEW}.cfg``)."""

from __future__ import annotations

from pathlib import Path

from datakit.errors import DatakitError


def read_cfg(path: Path) -> dict[str, str]:
    """``Key: Value`` lines, no section header; blank lines ignored; a stray line is an error."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # tolerate a byte-order mark
    except FileNotFoundError:
        raise DatakitError(f"{path.name} not found", path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatakitError(f"cannot read {path.name} ({e})", path) from None
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
        return float(info[key])
    except ValueError:
        raise DatakitError(f"{key} is not a number: {info[key]!r}", path) from None


def cfg_frame(info: dict[str, str], key: str, path: Path) -> int:
    """A required 1-based frame number (ED, ES)."""
    value = cfg_number(info, key, path)
    if value is None:
        raise DatakitError(f"no {key} frame number", path)
    if value != int(value) or value < 1:
        raise DatakitError(f"{key} must be a 1-based frame number, not {info[key]!r}", path)
    return int(value)
