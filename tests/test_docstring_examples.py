"""The runnable examples in the docstrings of the central types run, with the output they show, on a
store like the README's (ACDC converted with MAAG's split file; here from the phantoms)."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

from datakit.pipeline import ConvertOptions, convert
from datakit.sources.acdc import AcdcSource
from datakit.store import Store
from datakit.store.handle import LazyFile
from tests.helpers import REPO


@pytest.fixture(scope="module")
def maag_store(acdc_phantoms: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """acdc.h5 in a folder of its own: the phantoms with MAAG's split (patient001 valid, 002-003 unpaired
    masks, 004 scribbles)."""
    out = tmp_path_factory.mktemp("readme") / "acdc.h5"
    split = f"file:{REPO / 'manifests' / 'acdc_maag_split.json'}"
    convert(AcdcSource(acdc_phantoms), ConvertOptions(out=out, workers=1, progress=False, split=split))
    return out


def _examples(obj: object) -> list[doctest.DocTest]:
    tests = [t for t in doctest.DocTestFinder(recurse=False).find(obj) if t.examples]
    assert tests, f"{obj!r} has no example"
    return tests


@pytest.mark.parametrize("name", ["Store", "StoreDataset", "LazyFile", "Trainer", "Method"])
def test_docstring_example_runs(name: str, maag_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if name == "StoreDataset":
        pytest.importorskip("torch")
        from datakit.torch import StoreDataset as obj
    elif name == "Trainer":
        pytest.importorskip("torch")
        from train.loop import Trainer as obj
    elif name == "Method":
        from train.methods import Method as obj
    else:
        obj = {"Store": Store, "LazyFile": LazyFile}[name]
    monkeypatch.chdir(maag_store.parent)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in _examples(obj):
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
