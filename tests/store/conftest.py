"""The toy store, fresh for each test (tests/store/toy.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datakit.sample import Sample
from tests.store.toy import toy_samples, write_toy


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, list[Sample]]:
    """(path, samples) of a six-sample toy store."""
    samples = toy_samples(6, np.random.default_rng(0))
    return write_toy(tmp_path / "s.h5", samples), samples
