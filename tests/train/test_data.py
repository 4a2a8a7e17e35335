"""train/data.py: resumable multi-stream sampling, and --data memory and --data stream delivering the
same batches (loader workers included)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from tests.train.helpers import trainer  # noqa: E402
from train.data import MultiStreamSampler  # noqa: E402


def test_sampler_covers_each_epoch_and_resumes_from_its_state():
    streams = {"a": np.arange(10, 20), "b": np.arange(100, 107)}
    s = MultiStreamSampler(streams, batch_size=3, seed=0)
    it = iter(s)
    reqs = [next(it) for _ in range(7)]
    first_epoch = sorted(i for r in reqs[:3] for i in r["batches"]["a"])
    assert len(set(first_epoch)) == 9 and set(first_epoch) <= set(range(10, 20))  # 3 full batches of 10
    assert reqs[3]["state"]["a"] == [1, 1]  # the 4th batch starts epoch 1
    assert all(set(r["batches"]["b"]) <= set(range(100, 107)) for r in reqs)
    again = iter(MultiStreamSampler(streams, 3, 0, state=reqs[3]["state"]))
    assert [next(again)["batches"] for _ in range(3)] == [r["batches"] for r in reqs[4:7]]


def test_sampler_splits_patients_between_ranks():
    idx = np.arange(40)
    r0 = iter(MultiStreamSampler({"a": idx}, 4, seed=1, rank=0, world=2))
    r1 = iter(MultiStreamSampler({"a": idx}, 4, seed=1, rank=1, world=2))
    seen0 = {i for _ in range(5) for i in next(r0)["batches"]["a"]}
    seen1 = {i for _ in range(5) for i in next(r1)["batches"]["a"]}
    assert not seen0 & seen1 and len(seen0 | seen1) == 40


@pytest.mark.parametrize("rank,world", [(0, 1), (1, 2)])
def test_resident_batches_equal_the_loaders_for_epochs_and_resume(small_store: Path, tmp_path: Path, rank: int,
                                                                  world: int, monkeypatch: pytest.MonkeyPatch):
    """--data memory and --data stream deliver the same batches (each sorted by sample index) with the
    same sampler states, over several epochs of every stream and from a state taken mid-epoch; the
    resident path puts each stream's epoch of rows on the device once, not a copy per step."""
    from train.data import MultiStreamSampler, ResidentData, make_loader
    tr = trainer(small_store, tmp_path / "r", method="maag")
    batch, kinds = 3, tr.method.streams
    data = ResidentData(tr.store, tr.streams, kinds, torch.device("cpu"))
    copies: list[str] = []
    epoch_rows = data.epoch_rows
    monkeypatch.setattr(data, "epoch_rows", lambda name, b: copies.append(name) or epoch_rows(name, b))

    def streamed(state=None):
        loader, _ = make_loader(small_store, tr.streams, kinds, batch, seed=0, workers=0, rank=rank, world=world,
                                state=state)
        for b in loader:
            yield b, b.pop("state")

    def resident(state=None):
        return data.batches(MultiStreamSampler(tr.streams.indices, batch, 0, rank, world, state))

    epoch_len = {k: MultiStreamSampler(tr.streams.indices, batch, 0, rank, world).epoch_batches(k) for k in kinds}
    steps = 3 * max(epoch_len.values()) + 1  # three epochs of the longest stream, more of the others
    assert len(set(epoch_len.values())) > 1  # streams of different lengths: epochs start at different steps

    def same(a: dict, b: dict) -> bool:
        return a.keys() == b.keys() and all(
            a[k].keys() == b[k].keys() and all(t.dtype == b[k][f].dtype and torch.equal(t, b[k][f])
                                               for f, t in a[k].items()) for k in a)

    def check(got, want, n: int) -> list[tuple[dict, dict]]:
        out = []
        for step in range(n):
            (a, sa), (b, sb) = next(got), next(want)
            assert sa == sb and same(a, b), step
            out.append((a, sa))
        return out

    run = check(resident(), streamed(), steps)
    last = run[-1][1]
    assert {k: v[0] for k, v in last.items()} == {k: (steps - 1) // epoch_len[k] for k in kinds}
    # one copy of rows per stream per epoch started
    assert sorted(copies) == sorted(k for k in kinds for _ in range(last[k][0] + 1))
    # resumed from the state after a step in the middle of the longest stream's second epoch: the
    # batches that followed it, in both modes
    k = max(epoch_len.values()) + 1
    resumed = check(resident(run[k][1]), streamed(run[k][1]), 5)
    assert all(sa == sb and same(a, b) for (a, sa), (b, sb) in zip(resumed, run[k + 1:k + 6], strict=True))


def test_loader_workers_deliver_the_batches_of_the_main_process(small_store: Path):
    """--data stream with loader workers: each worker reads through its own handle (the Store's LazyFile
    reopens after the fork), and the batches and sampler states are those read in the main process."""
    from datakit.store import Store
    from train import methods
    from train.data import make_loader
    from train.methods import resolve_streams

    streams, kinds = resolve_streams(Store(small_store), "maag"), methods.get("maag").streams

    def first(workers: int, n: int = 6) -> list[dict]:
        loader, _ = make_loader(small_store, streams, kinds, 3, seed=0, workers=workers)
        it = iter(loader)
        return [next(it) for _ in range(n)]

    here, forked = first(0), first(2)
    for a, b in zip(here, forked, strict=True):
        assert a.pop("state") == b.pop("state") and a.keys() == b.keys() == set(kinds)
        for name, fields in a.items():
            assert fields.keys() == b[name].keys()
            assert all(torch.equal(t, b[name][f]) and t.dtype == b[name][f].dtype for f, t in fields.items())
