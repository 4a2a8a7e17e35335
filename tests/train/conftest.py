"""Session fixtures of the train tests: short runs on small_store (tests/conftest.py), read-only."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_run(small_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-step pce run (read-only for the tests): checkpoints to evaluate, predict with, refuse."""
    from tests.train.helpers import train_run

    return train_run(small_store, tmp_path_factory.mktemp("tiny") / "run", "pce", 2)


@pytest.fixture(scope="session")
def pp_run(small_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-step pce run with validation (read-only): its end decided post-processing."""
    from tests.train.helpers import train_run

    return train_run(small_store, tmp_path_factory.mktemp("pp") / "run", "pce", 3)


@pytest.fixture(scope="session")
def other_run(small_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, different model (full, 2 steps) on the same store: the other side of a comparison."""
    from tests.train.helpers import train_run

    return train_run(small_store, tmp_path_factory.mktemp("other") / "full", "full", 2)
