"""Store: chunked iteration, one chunk per sample array, rows in a given order, float16 stores read as float32."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from datakit.store import Store


def test_chunked_iteration_matches_random_access(store) -> None:
    path, samples = store
    with Store(path) as s:
        got = np.concatenate([block for _, block in s.iter_chunks("masks", chunk=4)])
        np.testing.assert_array_equal(got, np.stack([x.mask for x in samples]))
        idx, block = next(s.iter_chunks("images", indices=np.array([5, 1]), chunk=8))
        assert idx.tolist() == [1, 5]
        np.testing.assert_array_equal(block[1], samples[5].image)


def test_sample_reads_chunks_directly_not_through_h5py_selection(store, monkeypatch: pytest.MonkeyPatch) -> None:
    path, samples = store
    s = Store(path)
    _ = s.meta  # the small tables are read once, with h5py; the sample arrays must not be
    _ = s[0]
    real = h5py.Dataset.__getitem__

    def selection(d: h5py.Dataset, key: object) -> object:
        if d.name in ("/images", "/masks", "/scribbles", "/label_state"):
            raise AssertionError(f"{d.name}[{key}] read through h5py's selection")
        return real(d, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", selection)
    for i in (5, 0, 3, -1):
        got = s.sample(i)
        ref = samples[i]
        assert got["index"] == i % 6 and got["image"].dtype == np.float32
        np.testing.assert_array_equal(got["image"], ref.image)
        np.testing.assert_array_equal(got["mask"], ref.mask)
        np.testing.assert_array_equal(got["scribble"], ref.scribble)
        np.testing.assert_array_equal(got["label_state"], ref.label_state)
        assert got["patient"] == ref.patient
    got["label_state"][:] = 9  # a copy: the store's table is not changed through it
    assert s.sample(5)["label_state"].tolist() == samples[5].label_state.tolist()
    with pytest.raises(IndexError, match="out of range"):
        s.sample(6)
    s.close()  # the readers belong to the handle: reopened with it
    np.testing.assert_array_equal(s.sample(2)["mask"], samples[2].mask)


def test_sample_of_a_float16_store_is_float32(store, tmp_path: Path) -> None:
    from datakit.store.pack import pack_store

    path, samples = store
    pack_store(path, tmp_path / "half.h5")
    with Store(tmp_path / "half.h5") as s:
        assert s.file["images"].dtype == np.float16
        for i, ref in enumerate(samples):
            got = s.sample(i)["image"]
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, ref.image.astype(np.float16).astype(np.float32))



def test_rows_come_back_in_the_order_asked(store) -> None:
    """Store.rows: slices of a volume stored out of order are read in slice order (h5py reads only
    increasing indices), repeats included, and an empty request is an empty stack."""
    path, samples = store
    masks = np.stack([s.mask for s in samples])
    with Store(path) as s:
        for idx in ([3, 4, 5], [5, 2, 0], [4, 1, 4]):
            np.testing.assert_array_equal(s.rows("masks", idx), masks[idx])
        assert s.rows("images", []).shape == (0, 1, 16, 16)


def test_label_state_is_the_whole_table_read_once(store, monkeypatch: pytest.MonkeyPatch) -> None:
    path, samples = store
    with Store(path) as s:
        table = s.label_state
        assert table.dtype == np.int8 and table.tolist() == [x.label_state.tolist() for x in samples]
        monkeypatch.setattr(h5py.Dataset, "__getitem__", lambda d, key: pytest.fail(f"{d.name} read again"))
        assert s.label_state is table
