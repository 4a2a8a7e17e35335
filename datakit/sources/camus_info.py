"""CAMUS ``Info_{2CH,4CH}.cfg``: ``Key: Value`` lines, no section header.

Keys seen (docs/camus.md, Known and assumed): ED, ES (1-based frame numbers; ED may come after ES), NbFrame, Sex,
Age, ImageQuality, and EF (NIfTI release) or LVef (MHD release), FrameRate. Only ED and ES are
required; numbers may be written as int or float.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datakit.sources.cfg import cfg_frame, cfg_number, read_cfg

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


def parse_info(path: Path) -> ViewInfo:
    info = read_cfg(path)
    ef = cfg_number(info, "EF", path)
    if ef is None:
        ef = cfg_number(info, "LVef", path)  # the MHD release's name
    return ViewInfo(path=path, ed=cfg_frame(info, "ED", path), es=cfg_frame(info, "ES", path),
                    nb_frames=cfg_number(info, "NbFrame", path), frame_rate=cfg_number(info, "FrameRate", path),
                    image_quality=info.get("ImageQuality", ""), ef=ef, age=cfg_number(info, "Age", path),
                    sex=info.get("Sex", ""))
