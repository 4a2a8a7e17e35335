"""train/plan.py: eval and predict stop on a store prepared with another plan (here another spacing)."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from datakit.store import Store  # noqa: E402
from tests.train.helpers import invoke  # noqa: E402


@pytest.fixture(scope="module")
def other_spacing(small_phantoms: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """small_store's phantoms at the same size (64 px) but 3.5 mm pixels."""
    from datakit.pipeline import ConvertOptions, convert
    from datakit.sources.acdc import AcdcSource

    out = tmp_path_factory.mktemp("s35") / "acdc64_35.h5"
    convert(AcdcSource(small_phantoms, spacing=3.5, size=64), ConvertOptions(out=out, workers=1, progress=False),
            log=lambda m: None)
    return out


def test_eval_and_predict_stop_on_another_plan(pp_run: Path, other_spacing: Path, tmp_path: Path):
    assert Store(other_spacing).image_size == (64, 64)  # the size matches: only the spacing tells
    r = invoke("eval", "--run", pp_run, "--store", other_spacing, "--split", "valid")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "spacing_mm: 3.5 x 3.5 mm here, 3 x 3 mm in the checkpoint" in r.output and "--spacing 3" in r.output
    r = invoke("predict", "--checkpoint", pp_run / "checkpoints" / "best.pt", "--store", other_spacing, "--out",
               tmp_path / "p")
    assert r.exit_code == 1 and "3.5 x 3.5 mm here" in r.output and not (tmp_path / "p").exists()
