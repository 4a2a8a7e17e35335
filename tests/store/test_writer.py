"""The store module: round trips, atomic writes, and every clause validate_store checks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from datakit.errors import DatakitError
from datakit.sample import Sample, label_state_from_mask
from datakit.store import Store, StoreWriter, store_info, validate_store
from datakit.store.chunks import ImageFormat

CLASSES = ["background", "a", "b"]


def _samples(n: int, rng: np.random.Generator, size: int = 16) -> list[Sample]:
    out = []
    for i in range(n):
        m = rng.integers(0, 3, (size, size)).astype(np.uint8)
        sc = np.full((size, size), 255, np.uint8)
        sc[2, 2:8] = m[2, 2:8]
        out.append(Sample(image=rng.normal(size=(1, size, size)).astype(np.float32), mask=m, scribble=sc,
                          label_state=label_state_from_mask(m, 3), dataset="toy", patient=f"p{i // 2}",
                          frame="ED", slice=i % 2, spacing=(1.5, 1.5), slice_spacing=10.0,
                          source=f"p{i // 2}.nii.gz", scribble_source="manual"))
    return out


def _write(path: Path, samples: list[Sample], *, compression: str = "none", dtype: str = "float32", **kw) -> Path:
    with StoreWriter(path, classes=CLASSES, image_size=(16, 16), normalization="zscore",
                     image_format=ImageFormat(dtype, compression), **kw) as w:
        w.append(samples[:3])
        w.append(samples[3:])
        ids = sorted({s.patient for s in samples})
        w.set_patients({"id": ids, "age": [float(i) for i in range(len(ids))], "sex": ["F"] * len(ids)})
        w.set_splits({"train": [0, 1], "valid": [2, 3], "test": [4, 5]}, method="random", seed=0,
                     ratios=[0.4, 0.3, 0.3])
    return path


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, list[Sample]]:
    samples = _samples(6, np.random.default_rng(0))
    return _write(tmp_path / "s.h5", samples), samples


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_round_trip_is_exact(tmp_path: Path, compression: str) -> None:
    samples = _samples(6, np.random.default_rng(1))
    path = _write(tmp_path / "s.h5", samples, compression=compression)
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


def test_metadata_flushed_in_blocks_mid_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Metadata rows are buffered and written every META_FLUSH rows: blocks must land in order,
    extra columns included (real stores flush every 4096 rows, more than any test writes)."""
    from datakit.store import writer as writer_mod

    monkeypatch.setattr(writer_mod, "META_FLUSH", 2)
    samples = _samples(7, np.random.default_rng(2))
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


def test_chunked_iteration_matches_random_access(store) -> None:
    path, samples = store
    with Store(path) as s:
        got = np.concatenate([block for _, block in s.iter_chunks("masks", chunk=4)])
        np.testing.assert_array_equal(got, np.stack([x.mask for x in samples]))
        idx, block = next(s.iter_chunks("images", indices=np.array([5, 1]), chunk=8))
        assert idx.tolist() == [1, 5]
        np.testing.assert_array_equal(block[1], samples[5].image)


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "s.h5"
    with pytest.raises(RuntimeError), StoreWriter(out, classes=CLASSES, image_size=(16, 16)) as w:
        w.append(_samples(2, np.random.default_rng(0)))
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
        w.append(_samples(2, np.random.default_rng(0)))
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


def test_reader_survives_pickling_into_another_process(store) -> None:
    import pickle

    path, samples = store
    s = Store(path)
    _ = s[0]
    clone = pickle.loads(pickle.dumps(s))
    np.testing.assert_array_equal(clone[3]["mask"], samples[3].mask)


def test_store_info(store) -> None:
    path, _ = store
    d = store_info(path)
    assert d["samples"] == 6 and d["patients"] == 3 and d["classes"] == CLASSES
    assert d["splits"] == {"train": {"samples": 2, "patients": 1}, "valid": {"samples": 2, "patients": 1},
                           "test": {"samples": 2, "patients": 1}}
    assert d["spacing_mm"] == [1.5, 1.5] and d["normalization"] == "zscore"
    assert d["image_dtype"] == "float32" and d["image_compression"] == "none"


def test_reader_refuses_non_store(tmp_path: Path) -> None:
    p = tmp_path / "x.h5"
    with h5py.File(p, "w") as f:
        f.attrs["schema"] = "other"
    with pytest.raises(DatakitError, match="not a datakit store"):
        Store(p)
    (tmp_path / "t.h5").write_text("not hdf5")
    with pytest.raises(DatakitError, match="not a readable HDF5"):
        Store(tmp_path / "t.h5")


# -- validate: each clause, broken on purpose --------------------------------------------------------

def _broken(store, edit) -> list[str]:
    path, _ = store
    with h5py.File(path, "r+") as f:
        edit(f)
    return [str(v) for v in validate_store(path)]


def _replace(f: h5py.File, name: str, data: np.ndarray) -> None:
    del f[name]
    f.create_dataset(name, data=data, chunks=(1, *data.shape[1:]) if data.ndim == 3 else None)


def test_validate_missing_and_wrong_root_attrs(store) -> None:
    def edit(f):
        del f.attrs["created"]
        f.attrs["schema_version"] = 2
        f.attrs["classes"] = "not json"
    got = _broken(store, edit)
    assert "attrs/created: missing" in got
    assert any(v.startswith("attrs/schema_version: is 2") for v in got)
    assert "attrs/classes: not a JSON list of class names" in got


def test_validate_label_values_outside_classes(store) -> None:
    def edit(f):
        m = f["masks"][()]
        m[4, 0, 0] = 7
        _replace(f, "masks", m)
    got = _broken(store, edit)
    assert any(v.startswith("masks[4]: masks: values [7] outside classes 0-2 and 255") for v in got), got


def test_validate_label_state_inconsistent_with_mask(store) -> None:
    def edit(f):
        ls = f["label_state"][()]
        ls[1, 1] = 0  # says class 1 absent, but the mask has it
        f["label_state"][...] = ls
    got = _broken(store, edit)
    assert any("label_state 0 (absent) for class 1" in v and "[1]" in v for v in got), got


def test_validate_split_overlap_and_range(store) -> None:
    def edit(f):
        del f["splits/valid"]
        f["splits"].create_dataset("valid", data=np.array([1, 2], np.int64))  # sample 1 is patient p0
        del f["splits/test"]
        f["splits"].create_dataset("test", data=np.array([4, 99], np.int64))
    got = _broken(store, edit)
    assert any(v.startswith("splits/train & splits/valid: 1 patient(s) in both: p0") for v in got), got
    assert any(v.startswith("splits/test: indices outside 0-5: 99") for v in got), got


def test_validate_dtypes_shapes_and_meta(store) -> None:
    def edit(f):
        _replace(f, "scribbles", f["scribbles"][()].astype(np.int16))
        del f["meta/view"]
        f["meta/scribble_source"][0] = "by hand"
    got = _broken(store, edit)
    assert "scribbles: dtype int16, expected uint8" in got
    assert "meta/view: missing" in got
    assert any(v.startswith("meta/scribble_source[0]") for v in got), got


def test_validate_patient_table_and_nan_images(store) -> None:
    def edit(f):
        del f["patients/id"]
        f["patients"].create_dataset("id", data=np.array(["p0", "p1", "zz"], object),
                                     dtype=h5py.string_dtype())
        img = f["images"][()]
        img[3, 0, 0, 0] = np.nan
        f["images"][...] = img
    got = _broken(store, edit)
    assert any(v.startswith("meta/patient: 1 patient(s) not in patients/id: p2") for v in got), got
    assert any(v.startswith("images[3]: images: NaN or inf") for v in got), got


def test_validate_unreadable_file(tmp_path: Path) -> None:
    p = tmp_path / "x.h5"
    p.write_bytes(b"\x89HDF\r\n" + b"0" * 40)
    (v,) = validate_store(p)
    assert v.where == str(p) and "cannot be opened" in v.problem


def test_keypoints_round_trip(tmp_path: Path) -> None:
    samples = _samples(6, np.random.default_rng(2))
    for i, s in enumerate(samples):
        s.keypoints = np.array([[i, 2 * i, 1], [np.nan, np.nan, 0]], np.float32)
    path = _write(tmp_path / "k.h5", samples, keypoint_names=["apex", "hinge"])
    with Store(path) as s:
        assert s.keypoint_names == ["apex", "hinge"]
        np.testing.assert_array_equal(s[4]["keypoints"][0], [4, 8, 1])
    assert validate_store(path) == []
    with h5py.File(path) as f:
        assert json.loads(f["keypoints"].attrs["names"]) == ["apex", "hinge"]


def test_validate_scribble_source_none_with_labelled_pixels(store) -> None:
    def edit(f):
        f["meta/scribble_source"][2] = "none"  # sample 2 holds scribble pixels (see _samples)
    got = _broken(store, edit)
    assert "meta/scribble_source[2]: 'none' but the scribble holds labelled pixels" in got, got


def test_float16_images_round_to_half_precision_and_read_as_float32(tmp_path: Path) -> None:
    samples = _samples(6, np.random.default_rng(3))
    for comp in ("none", "gzip"):
        path = _write(tmp_path / f"{comp}.h5", samples, compression=comp, dtype="float16")
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
    samples = _samples(2, np.random.default_rng(4))
    samples[1].image[0, 3, 3] = 70000.0  # > 65504: would become inf
    with pytest.raises(DatakitError, match="beyond float16's range"):
        _write(tmp_path / "s.h5", samples, dtype="float16")
    assert not list(tmp_path.iterdir())  # no store, no temporary
    samples[1].image[0, 3, 3] = np.inf  # non-finite values are kept as they are (validate reports them)
    samples[1].image[0, 3, 4] = -65504.0
    samples[1].image[0, 3, 5] = np.nan
    path = _write(tmp_path / "t.h5", samples, dtype="float16")
    with h5py.File(path) as f:
        assert np.isinf(f["images"][1, 0, 3, 3]) and f["images"][1, 0, 3, 4] == -65504.0
        assert np.isnan(f["images"][1, 0, 3, 5])


# -- JSON-text attrs: an empty list is "[]", also when read from a store that holds it as an array -----------

def _legacy_store(path: Path) -> Path:
    """A store as conversions have written it so far: ``notes``/``skipped`` set to [] through
    StoreWriter.set_attr, which h5py stores as an empty float64 array (written here with h5py itself, so
    the store stays legacy once the writer is fixed)."""
    samples = _samples(6, np.random.default_rng(0))
    with StoreWriter(path, classes=CLASSES, image_size=(16, 16), normalization="zscore") as w:
        w.append(samples)
        w.set_patients({"id": sorted({s.patient for s in samples})})
        w.set_splits({"train": [0, 1, 2, 3], "valid": [4, 5]}, method="random", seed=0, ratios=[0.7, 0.3])
    with h5py.File(path, "r+") as f:
        f.attrs["skipped"] = []
        f.attrs["notes"] = []
        assert isinstance(f.attrs["notes"], np.ndarray) and f.attrs["notes"].size == 0  # the legacy form
    return path


def test_json_attrs_read_as_json_text_from_stores_holding_an_empty_array(tmp_path: Path) -> None:
    from datakit.store.contract import json_attr

    path = _legacy_store(tmp_path / "s.h5")
    with Store(path) as s:
        assert s.attrs["notes"] == "[]" and s.attrs["skipped"] == "[]"
        assert json.loads(s.attrs["classes"]) == CLASSES
    assert store_info(path)["notes"] == [] and store_info(path)["skipped"] == []
    assert validate_store(path) == []  # accepted: datakit itself wrote them so
    # the contract's form, for every JSON attr; other attrs untouched
    assert json_attr("notes", []) == "[]" and json_attr("skipped", np.zeros(0)) == "[]"
    assert json_attr("notes", '["kept"]') == '["kept"]' and json_attr("scribble_synthesis", {"a": 1}) == '{"a": 1}'
    assert json_attr("image_size", [1, 2]) == [1, 2]


def test_copies_of_a_store_write_json_attrs_as_json_text(tmp_path: Path) -> None:
    """``datakit scribble`` and ``pack_store`` copy root attrs: a legacy empty array becomes "[]"."""
    from datakit.rescribble import rescribble
    from datakit.store.pack import pack_store

    src = _legacy_store(tmp_path / "s.h5")
    rescribble(src, tmp_path / "r.h5", "skeleton")
    pack_store(src, tmp_path / "p.h5")
    for out in ("r.h5", "p.h5"):
        with h5py.File(tmp_path / out, "r") as f:
            assert f.attrs["skipped"] == "[]", out
            assert isinstance(f.attrs["notes"], str) and isinstance(json.loads(f.attrs["notes"]), list), out
        assert validate_store(tmp_path / out) == [], out


def test_validate_names_a_json_attr_that_is_not_json_text(store) -> None:
    def edit(f):
        f.attrs["notes"] = "not json"
        f.attrs["skipped"] = "{}"
        f.attrs["scribble_synthesis"] = "[]"
    got = _broken(store, edit)
    assert "attrs/notes: expected JSON text of a list, found 'not json'" in got
    assert "attrs/skipped: expected JSON text of a list, found '{}'" in got
    assert "attrs/scribble_synthesis: expected JSON text of a dict, found '[]'" in got


def test_a_conversion_writes_empty_notes_as_json_text(acdc_store: Path) -> None:
    with h5py.File(acdc_store, "r") as f:
        assert isinstance(f.attrs["notes"], str) and isinstance(f.attrs["skipped"], str)


# -- Store.sample: one chunk per array through ChunkReader, float32 images --------------------------------

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
