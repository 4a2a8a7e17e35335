"""Info_{VIEW}.cfg parsing: both releases' keys, tolerant number formats, errors naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from datakit.errors import DatakitError
from datakit.sources.camus_info import parse_info


def _cfg(tmp_path: Path, text: str | bytes) -> Path:
    p = tmp_path / "Info_2CH.cfg"
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return p


def test_nifti_keys_with_bom_crlf_and_float_frames(tmp_path: Path) -> None:
    p = _cfg(tmp_path, "\ufeffED: 1.0\r\nES: 14\r\nNbFrame: 14\r\nSex: F\r\nAge: 57\r\n"
                       "ImageQuality: Medium\r\nEF: 38\r\nFrameRate: 50.0\r\n".encode())
    info = parse_info(p)
    assert (info.ed, info.es, info.nb_frames, info.frame_rate) == (1, 14, 14.0, 50.0)
    assert (info.sex, info.age, info.image_quality, info.ef) == ("F", 57.0, "Medium", 38.0)


def test_mhd_keys_ef_from_lvef_and_ed_after_es(tmp_path: Path) -> None:
    info = parse_info(_cfg(tmp_path, "ED: 18\nES: 3\nNbFrame: 20\nLVedv: 120.5\nLVesv: 60.1\nLVef: 50.12\n"))
    assert (info.ed, info.es, info.ef) == (18, 3, 50.12)
    assert info.frame_rate is None and info.age is None and info.sex == "" and info.image_quality == ""


@pytest.mark.parametrize("text, reason", [
    ("ES: 3\n", "no ED frame number"),
    ("ED: 1.5\nES: 3\n", "ED must be a 1-based frame number"),
    ("ED: 0\nES: 3\n", "ED must be a 1-based frame number"),
    ("ED: 1\nES: 3\nAge: old\n", "Age is not a number"),
    ("ED: 1\nES 3\n", "line 2 is not 'Key: Value'"),
])
def test_bad_cfg_names_the_file(tmp_path: Path, text: str, reason: str) -> None:
    p = _cfg(tmp_path, text)
    with pytest.raises(DatakitError, match=reason) as e:
        parse_info(p)
    assert e.value.where == str(p)


def test_missing_cfg(tmp_path: Path) -> None:
    with pytest.raises(DatakitError, match="Info_4CH.cfg not found"):
        parse_info(tmp_path / "Info_4CH.cfg")
