"""The chunk codec: half-precision images."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from datakit.errors import DatakitError
from datakit.store import Store, store_info, validate_store
from datakit.store.chunks import ChunkReader
from tests.store.toy import toy_samples, write_toy


def test_float16_images_round_to_half_precision_and_read_as_float32(tmp_path: Path) -> None:
    samples = toy_samples(6, np.random.default_rng(3))
    for comp in ("none", "gzip"):
        path = write_toy(tmp_path / f"{comp}.h5", samples, compression=comp, dtype="float16")
        assert validate_store(path) == []
        with h5py.File(path) as f:
            assert f["images"].dtype == np.float16 and f["images"].chunks == (1, 1, 16, 16)
        d = store_info(path)
        assert d["image_dtype"] == "float16" and d["image_compression"] == comp
        with Store(path) as s:
            for i, ref in enumerate(samples):
                got = s[i]["image"]
                assert got.dtype == np.float32
                np.testing.assert_array_equal(got, ref.image.astype(np.float16).astype(np.float32))
                assert np.abs(got - ref.image).max() <= 2**-11 * np.abs(ref.image).max()  # relative precision


def test_float16_refuses_values_it_cannot_hold(tmp_path: Path) -> None:
    samples = toy_samples(2, np.random.default_rng(4))
    samples[1].image[0, 3, 3] = 70000.0  # > 65504: would become inf
    with pytest.raises(DatakitError, match="beyond float16's range"):
        write_toy(tmp_path / "s.h5", samples, dtype="float16")
    assert not list(tmp_path.iterdir())  # no store, no temporary
    samples[1].image[0, 3, 3] = np.inf  # non-finite values are kept as they are (validate reports them)
    samples[1].image[0, 3, 4] = -65504.0
    samples[1].image[0, 3, 5] = np.nan
    path = write_toy(tmp_path / "t.h5", samples, dtype="float16")
    with h5py.File(path) as f:
        assert np.isinf(f["images"][1, 0, 3, 3]) and f["images"][1, 0, 3, 4] == -65504.0
        assert np.isnan(f["images"][1, 0, 3, 5])



def test_image_format_refuses_what_the_writer_cannot_produce() -> None:
    from datakit.store.chunks import ImageFormat

    with pytest.raises(DatakitError, match="image dtype must be one of float32, float16, not 'float64'"):
        ImageFormat("float64")
    with pytest.raises(DatakitError, match="image compression must be one of none, gzip, not 'zstd'"):
        ImageFormat("float32", "zstd")


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
