"""train/methods/streams.py: each method's streams from the store's splits (halved for MAAG without its
split), refused without scribbles, unpaired masks only complete ones."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

pytest.importorskip("torch")

from datakit.errors import DatakitError  # noqa: E402
from datakit.store import Store  # noqa: E402
from train.methods import resolve_streams  # noqa: E402


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
