"""StoreWriter: round trips, metadata blocks, atomic writes, refusals, file permissions."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from datakit.errors import DatakitError
from datakit.store import Store, StoreWriter, validate_store
from tests.store.toy import CLASSES, toy_samples, write_toy


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_round_trip_is_exact(tmp_path: Path, compression: str) -> None:
    samples = toy_samples(6, np.random.default_rng(1))
    path = write_toy(tmp_path / "s.h5", samples, compression=compression)
    with Store(path) as s:
        assert len(s) == 6 and s.classes == CLASSES and s.image_size == (16, 16)
        for i, ref in enumerate(samples):
            got = s[i]
            np.testing.assert_array_equal(got["image"], ref.image)
            np.testing.assert_array_equal(got["mask"], ref.mask)
            np.testing.assert_array_equal(got["scribble"], ref.scribble)
            np.testing.assert_array_equal(got["label_state"], ref.label_state)
            assert got["patient"] == ref.patient and got["slice"] == ref.slice
        assert s.patients["id"].tolist() == ["p0", "p1", "p2"]
        assert s.patients["age"].dtype == np.float64
        assert s.splits["valid"].tolist() == [2, 3]
    assert validate_store(path) == []
    with h5py.File(path) as f:  # one sample per chunk; only h5py's own filters
        assert f["images"].chunks == (1, 1, 16, 16)
        assert f["images"].compression == (None if compression == "none" else "gzip")
        assert f["masks"].compression == "gzip"
        assert f.attrs["schema"] == "datakit-store" and f.attrs["schema_version"] == 1


def test_metadata_flushed_in_blocks_midwrite_toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Metadata rows are buffered and written every META_FLUSH rows: blocks must land in order,
    extra columns included (real stores flush every 4096 rows, more than any test writes)."""
    from datakit.store import writer as writer_mod

    monkeypatch.setattr(writer_mod, "META_FLUSH", 2)
    samples = toy_samples(7, np.random.default_rng(2))
    for i, sm in enumerate(samples):
        sm.extra = {"source_shape": np.array([100 + i, 200], np.int32)}
    path = tmp_path / "m.h5"
    with StoreWriter(path, classes=CLASSES, image_size=(16, 16)) as w:
        for i in range(0, 7, 3):
            w.append(samples[i:i + 3])
            assert not w._meta_rows or len(w._meta_rows) < 2  # flushed as soon as 2 are buffered
        w.set_patients({"id": sorted({sm.patient for sm in samples})})
        w.set_splits({"train": list(range(7))}, method="random", seed=0, ratios=[1.0])
    with Store(path) as s:
        assert [s[i]["slice"] for i in range(7)] == [sm.slice for sm in samples]
        assert list(s.meta["patient"]) == [sm.patient for sm in samples]
        assert s.meta["source_shape"][:, 0].tolist() == list(range(100, 107))
    assert validate_store(path) == []


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "s.h5"
    with pytest.raises(RuntimeError), StoreWriter(out, classes=CLASSES, image_size=(16, 16)) as w:
        w.append(toy_samples(2, np.random.default_rng(0)))
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_failed_rewrite_keeps_previous_store(store, tmp_path: Path) -> None:
    path, _ = store
    before = path.read_bytes()
    with pytest.raises(RuntimeError), StoreWriter(path, classes=CLASSES, image_size=(16, 16), overwrite=True):
        raise RuntimeError("interrupted")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.h5"]


def test_existing_output_refused_without_overwrite(store) -> None:
    path, _ = store
    with pytest.raises(DatakitError, match="already exists; pass --overwrite"):
        StoreWriter(path, classes=CLASSES, image_size=(16, 16))


def test_store_gets_ordinary_file_permissions(store) -> None:
    """What the umask gives a new file, like any other file the user creates."""
    import os

    path, _ = store
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_temporary_never_reuses_an_existing_file(tmp_path, monkeypatch) -> None:
    """The temporary is created exclusively: a name already taken (another writer's) is skipped."""
    from datakit import safe_io

    names = iter(["aaaa", "aaaa", "bbbb"])
    monkeypatch.setattr(safe_io.secrets, "token_hex", lambda n: next(names))
    pid = os.getpid()
    taken = tmp_path / f".out.h5.{pid}-aaaa.tmp"
    taken.write_bytes(b"another writer's data")
    with StoreWriter(tmp_path / "out.h5", classes=CLASSES, image_size=(16, 16)) as w:
        assert w.tmp_path == tmp_path / f".out.h5.{pid}-bbbb.tmp"
        w.append(toy_samples(2, np.random.default_rng(0)))
        w.set_splits({"train": [0, 1]}, method="random", seed=0, ratios=[1.0])
    assert taken.read_bytes() == b"another writer's data"
    assert (tmp_path / "out.h5").exists() and not (tmp_path / f".out.h5.{pid}-bbbb.tmp").exists()


def test_folder_where_no_file_can_be_created(tmp_path, monkeypatch) -> None:
    """A read-only folder (or /proc): the creation error names the folder, as a DatakitError."""
    import errno

    from datakit.store import writer as writer_mod

    def refuse(path, mode):
        raise PermissionError(errno.EACCES, "Unable to synchronously create file")

    monkeypatch.setattr(writer_mod.h5py, "File", refuse)
    with pytest.raises(DatakitError, match=r"cannot create the store in this folder \(Permission denied\)") as e:
        StoreWriter(tmp_path / "out.h5", classes=CLASSES, image_size=(16, 16))
    assert e.value.where == str(tmp_path) and list(tmp_path.iterdir()) == []


def test_keypoints_round_trip(tmp_path: Path) -> None:
    samples = toy_samples(6, np.random.default_rng(2))
    for i, s in enumerate(samples):
        s.keypoints = np.array([[i, 2 * i, 1], [np.nan, np.nan, 0]], np.float32)
    path = write_toy(tmp_path / "k.h5", samples, keypoint_names=["apex", "hinge"])
    with Store(path) as s:
        assert s.keypoint_names == ["apex", "hinge"]
        np.testing.assert_array_equal(s[4]["keypoints"][0], [4, 8, 1])
    assert validate_store(path) == []
    with h5py.File(path) as f:
        assert json.loads(f["keypoints"].attrs["names"]) == ["apex", "hinge"]


def test_a_conversion_writes_empty_notes_as_json_text(acdc_store: Path) -> None:
    with h5py.File(acdc_store, "r") as f:
        assert isinstance(f.attrs["notes"], str) and isinstance(f.attrs["skipped"], str)

