"""The training loader: chunk decoding matches h5py, streams from splits, resumable sampling."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

pytest.importorskip("torch")

from datakit.errors import DatakitError  # noqa: E402
from datakit.store import Store  # noqa: E402
from datakit.store.chunks import ChunkReader  # noqa: E402
from train.data import MultiStreamSampler  # noqa: E402
from train.methods import resolve_streams  # noqa: E402


@pytest.mark.parametrize("filters", [{}, {"compression": "gzip", "compression_opts": 1},
                                     {"compression": "gzip", "shuffle": True},
                                     {"compression": "lzf"}])
def test_chunk_reader_matches_h5py(tmp_path: Path, filters: dict):
    rng = np.random.default_rng(0)
    imgs = rng.normal(size=(5, 1, 12, 10)).astype(np.float32)
    labs = rng.integers(0, 4, (5, 12, 10)).astype(np.uint8)
    labs[2] = 255  # a constant chunk
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("images", data=imgs, chunks=(1, 1, 12, 10), **filters)
        f.create_dataset("masks", data=labs, chunks=(1, 12, 10), **filters)
    with h5py.File(tmp_path / "x.h5") as f:
        for name, ref in (("images", imgs), ("masks", labs)):
            r = ChunkReader(f[name])
            assert r.direct == ("lzf" not in filters.values())
            for i in range(5):
                a = r.read(i)
                assert a.dtype == ref.dtype and np.array_equal(a, ref[i])


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


def _tiny(root: Path, out: Path, scribbles: str = "auto") -> Path:
    from datakit.pipeline import ConvertOptions, convert
    from datakit.sources.acdc import AcdcSource

    convert(AcdcSource(root, scribbles=scribbles, size=32, spacing=8.0),
            ConvertOptions(out=out, workers=1, progress=False), log=lambda m: None)
    return out


def test_streams_halve_train_when_maag_splits_are_absent(acdc_phantoms: Path, tmp_path: Path):
    s = Store(_tiny(acdc_phantoms, tmp_path / "tiny.h5"))
    st = resolve_streams(s, "maag")
    pat = s.meta["patient"]
    scrib, masks = set(pat[st.indices["scribble"]]), set(pat[st.indices["masks"]])
    train = sorted(set(pat[s.splits["train"]]))
    assert not scrib & masks and scrib | masks == set(train)
    assert sorted(scrib) == train[:(len(train) + 1) // 2]
    assert np.array_equal(st.indices["unlabelled"], st.indices["scribble"])
    assert "halved" in st.how
    # halving is maag's need (unpaired masks from other patients), not the baselines': they train on all of train
    full, pce = resolve_streams(s, "full"), resolve_streams(s, "pce")
    assert set(full.indices) == {"full"} and set(pat[full.indices["full"]]) == set(train)
    assert set(pat[pce.indices["scribble"]]) == set(train)


def test_streams_refuse_a_store_without_scribbles(acdc_phantoms: Path, tmp_path: Path):
    out = _tiny(acdc_phantoms, tmp_path / "none.h5", scribbles="none")
    with pytest.raises(DatakitError, match="no scribbles"):
        resolve_streams(Store(out), "pce")
    assert set(resolve_streams(Store(out), "full").indices) == {"full"}


def test_unpaired_masks_keep_only_complete_label_states(acdc_phantoms: Path, tmp_path: Path):
    """Samples with any class at -1 (CAMUS sequence frames, merged or Unity stores) are no real
    shapes for the discriminator: the masks stream leaves them out, and refuses when none is left."""
    path = _tiny(acdc_phantoms, tmp_path / "tiny.h5")
    masks = resolve_streams(Store(path), "maag").indices["masks"]
    assert len(masks) >= 3
    unknown_class, all_unknown = masks[0], masks[1]
    with h5py.File(path, "r+") as f:
        ls = f["label_state"][()]
        ls[unknown_class, 2] = -1  # one class never annotated, its pixels left in the background
        ls[all_unknown] = -1  # a sequence frame: mask all 255
        f["label_state"][...] = ls
        m = f["masks"][all_unknown]
        m[...] = 255
        f["masks"][all_unknown] = m
    st = resolve_streams(Store(path), "maag")
    kept = st.indices["masks"]
    assert set(kept) == set(masks) - {unknown_class, all_unknown}
    assert "2 of" in st.how and "left out" in st.how
    assert set(st.indices["scribble"]) <= set(resolve_streams(Store(path), "pce").indices["scribble"])
    with h5py.File(path, "r+") as f:
        ls = f["label_state"][()]
        ls[masks, 1] = -1
        f["label_state"][...] = ls
    with pytest.raises(DatakitError, match="'train \\(second half\\)' has no sample with a complete mask"):
        resolve_streams(Store(path), "maag")
    assert len(resolve_streams(Store(path), "pce").indices["scribble"])  # only maag reads the masks stream
