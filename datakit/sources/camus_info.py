"""CAMUS ``Info_{2CH,4CH}.cfg``: ``Key: Value`` lines, no section header.

Keys seen (docs FORMATS.md): ED, ES (1-based frame numbers; ED may come after ES), NbFrame, Sex,
Age, ImageQuality, and EF (NIfTI release) or LVef (MHD release), FrameRate. Only ED and ES are
required; numbers may be written as int or float.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datakit.errors import DatakitError

QUALITY_RANK = {"Good": 0, "Medium": 1, "Poor": 2}


@dataclass(frozen=True)
class ViewInfo:
    path: Path
    ed: int
    es: int
    nb_frames: float | None
    frame_rate: float | None
    image_quality: str
    ef: float | None
    age: float | None
    sex: str


def read_cfg(path: Path) -> dict[str, str]:
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


def _number(info: dict[str, str], key: str, path: Path) -> float | None:
    if info.get(key, "") == "":
        return None
    try:
        return float(info[key])
    except ValueError:
        raise DatakitError(f"{key} is not a number: {info[key]!r}", path) from None


def _frame(info: dict[str, str], key: str, path: Path) -> int:
    value = _number(info, key, path)
    if value is None:
        raise DatakitError(f"no {key} frame number", path)
    if value != int(value) or value < 1:
        raise DatakitError(f"{key} must be a 1-based frame number, not {info[key]!r}", path)
    return int(value)


def parse_info(path: Path) -> ViewInfo:
    info = read_cfg(path)
    ef = _number(info, "EF", path)
    if ef is None:
        ef = _number(info, "LVef", path)  # the MHD release's name
    return ViewInfo(path=path, ed=_frame(info, "ED", path), es=_frame(info, "ES", path),
                    nb_frames=_number(info, "NbFrame", path), frame_rate=_number(info, "FrameRate", path),
                    image_quality=info.get("ImageQuality", ""), ef=ef, age=_number(info, "Age", path),
                    sex=info.get("Sex", ""))
