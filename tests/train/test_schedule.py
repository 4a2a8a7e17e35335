"""train/schedule.py: the authors' cyclic learning rate, and every method's optimisers following it."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from tests.train.helpers import trainer  # noqa: E402
from train.schedule import cyclic, lr_factor  # noqa: E402


def test_cyclic_schedule_is_the_authors_triangle():
    # lower bound 1e-5 (their 1e-4 // 10 meant), upper 1e-4 at epoch 20, back down at 40; / (1 + 1e-4 e)
    assert cyclic(0, 20) == pytest.approx(0.1)
    assert cyclic(10, 20) == pytest.approx(0.55 / (1 + 1e-3))
    assert cyclic(20, 20) == pytest.approx(1.0 / (1 + 2e-3))
    assert cyclic(40, 20) == pytest.approx(0.1 / (1 + 4e-3))
    assert cyclic(60, 20) == pytest.approx(1.0 / (1 + 6e-3))
    f = lr_factor("cyclic", 10_000, steps_per_epoch=54)
    assert f(53) == f(0) and f(54) == pytest.approx(cyclic(1, 20))  # changes once per epoch
    assert lr_factor("constant", 10, 5)(7) == 1.0
    assert lr_factor("cosine", 10, 5)(10) == pytest.approx(0.0)


def test_every_method_follows_the_cycle_by_default(small_store: Path, tmp_path: Path):
    """Adam's lr in a real Trainer: the cycle's values at epoch boundaries, for G and D alike."""
    for method in ("maag", "full"):
        tr = trainer(small_store, tmp_path / method, method=method, lr_half_period=2)
        e = tr.epoch_steps
        seen = []
        for step in range(4 * e + 1):
            if step % e == 0:
                seen.append(tr.nets.opt_g.param_groups[0]["lr"])
                if tr.nets.opt_d is not None:
                    assert tr.nets.opt_d.param_groups[0]["lr"] == seen[-1]
            tr.nets.opt_g.step()
            tr.nets.sched_g.step()
            if tr.nets.opt_d is not None:
                tr.nets.opt_d.step()
                tr.nets.sched_d.step()
        want = [1e-4 * cyclic(k, 2) for k in range(5)]
        assert seen == pytest.approx(want)
        assert seen[2] == pytest.approx(1e-4 / (1 + 2e-4)) and seen[0] == pytest.approx(1e-5)
