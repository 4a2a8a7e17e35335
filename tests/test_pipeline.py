"""The conversion pipeline every converter shares, driven by a minimal in-memory source."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from datakit.errors import DatakitError
from datakit.pipeline import ConvertOptions, SynthSpec, convert
from datakit.sample import Sample, label_state_from_mask
from datakit.sources.base import ItemResult, SourceBase
from datakit.store import Store, validate_store


@dataclass(frozen=True)
class _Item:
    patient: str


@dataclass
class _Source(SourceBase):
    """Patient "p0" has no samples but reports a listing note; the others one sample each (the
    optional members of a source come from SourceBase)."""

    name: str = "toy"
    classes = ["background", "thing"]
    image_size = (8, 8)
    channels = 1
    normalization = "none"
    stratify_column = None
    keypoint_names = None

    def items(self) -> list[_Item]:
        return [_Item(f"p{i}") for i in range(4)]

    def default_split(self) -> str:
        return "random"

    def read(self, item: _Item) -> ItemResult:
        if item.patient == "p0":
            return ItemResult([], {"id": "p0"}, ["listing: 2 label keys name no file"])
        mask = np.zeros((8, 8), np.uint8)
        mask[2:5, 2:5] = 1
        sample = Sample(image=np.zeros((1, 8, 8), np.float32), mask=mask, scribble=np.full((8, 8), 255, np.uint8),
                        label_state=label_state_from_mask(mask, 2), dataset=self.name, patient=item.patient)
        return ItemResult([sample], {"id": item.patient}, [])


def test_a_patient_without_samples_keeps_its_notes(tmp_path: Path) -> None:
    out = tmp_path / "toy.h5"
    logged: list[str] = []
    report = convert(_Source(), ConvertOptions(out=out, workers=2, progress=False), log=logged.append)
    assert report.samples == 3 and report.skipped == [{"patient": "p0", "reason": "no samples"}]
    assert "listing: 2 label keys name no file" in report.notes and "listing: 2 label keys name no file" in logged
    with Store(out) as s:
        assert "listing: 2 label keys name no file" in json.loads(s.attrs["notes"])
    assert validate_store(out) == []


def test_bad_synthesis_parameters_fail_before_any_patient_is_read(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The library checks them itself, not only the command line (a bad value used to fail per patient)."""
    def no_reading(self, item):
        raise AssertionError("a patient was read")

    monkeypatch.setattr(_Source, "read", no_reading)
    for params, text in (({"bogus": 1}, "takes no 'bogus' parameter"), ({}, "unknown scribble algorithm")):
        algo = "skeleton" if params else "nosuch"
        opts = ConvertOptions(out=tmp_path / "s.h5", workers=2, progress=False, on_error="skip",
                              synth=SynthSpec(algo, 0, params))
        with pytest.raises(DatakitError, match=text):
            convert(_Source(), opts)
        assert list(tmp_path.iterdir()) == []
