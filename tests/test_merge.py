"""``datakit merge``: classes unified by name, labels remapped, patients and splits merged, streamed."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from datakit.cli import app
from datakit.errors import DatakitError
from datakit.merge import merge_stores
from datakit.pipeline import ConvertOptions, convert
from datakit.sources.folder import FolderSource
from datakit.store import Store, validate_store
from datakit.store.chunks import ImageFormat
from tests.folder_data import write_pairs

runner = CliRunner()


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def folder_store(tmp: Path, name: str, classes: list[str], names: list[str], size: int = 32,
                 split: str = "random") -> Path:
    src = tmp / name
    write_pairs(src, names, mask_scale=1, seed=len(name))
    out = tmp / f"{name}.h5"
    convert(FolderSource(src, classes=classes, size=size), ConvertOptions(out=out, workers=1, progress=False,
                                                                           split=split), log=lambda m: None)
    return out


@pytest.fixture(scope="module")
def two_stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("merge")
    return (folder_store(tmp, "lungs", ["background", "lung"], ["l1", "l2", "l3", "l4"]),
            folder_store(tmp, "polyps", ["background", "polyp"], ["p1", "p2", "p3"]))


def test_merge_unifies_classes_and_remaps_labels(two_stores: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = two_stores
    out = tmp_path / "m.h5"
    r = run("merge", a, b, "--out", out)
    assert r.exit_code == 0, r.output
    assert "classes: 0 background, 1 lung, 2 polyp" in r.output
    assert "polyp 1->2" in r.output and "lung 1->1" in r.output
    assert validate_store(out) == []
    with Store(a) as sa, Store(b) as sb, Store(out) as m:
        assert m.classes == ["background", "lung", "polyp"] and len(m) == len(sa) + len(sb)
        n = len(sa)
        assert np.array_equal(m.file["images"][()], np.concatenate([sa.file["images"][()], sb.file["images"][()]]))
        assert np.array_equal(m.file["masks"][:n], sa.file["masks"][()])
        pb = sb.file["masks"][()]
        assert np.array_equal(m.file["masks"][n:], np.where(pb == 1, 2, pb))
        assert (m.file["label_state"][:n, 2] == -1).all() and (m.file["label_state"][n:, 1] == -1).all()
        assert np.array_equal(m.file["label_state"][n:, [0, 2]], sb.file["label_state"][()])
        assert list(m.meta["dataset"]) == ["folder:lungs"] * n + ["folder:polyps"] * len(sb)
        for name in ("train", "valid", "test"):
            assert np.array_equal(m.splits[name], np.concatenate([sa.splits[name], sb.splits[name] + n]))
        assert m.patients["dataset"].tolist() == ["folder:lungs"] * 4 + ["folder:polyps"] * 3
        assert m.patients["id"].tolist() == ["l1", "l2", "l3", "l4", "p1", "p2", "p3"]  # no collision: as is
        assert m.split_attrs["method"] == "random"


def test_classes_override_renames_and_orders(two_stores: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = two_stores
    rep = merge_stores([b, a], tmp_path / "m.h5", classes=["bg=background", "organ=lung|polyp"])
    assert rep.classes == ["bg", "organ"]
    assert validate_store(tmp_path / "m.h5") == []
    with Store(tmp_path / "m.h5") as m:
        assert set(np.unique(m.file["masks"][()]).tolist()) == {0, 1}
        assert (m.file["label_state"][()] >= 0).all()  # every class known in every input
    with pytest.raises(DatakitError, match=r"polyps.h5: class 'polyp' is not in --classes background,lung"):
        merge_stores([a, b], tmp_path / "n.h5", classes=["background", "lung"])
    assert not (tmp_path / "n.h5").exists()


def test_colliding_patient_ids_are_prefixed_by_dataset(acdc_store: Path, tmp_path: Path) -> None:
    copy = tmp_path / "again.h5"
    shutil.copy(acdc_store, copy)
    r = run("merge", acdc_store, copy, "--out", tmp_path / "m.h5")
    assert r.exit_code == 0, r.output
    assert "patient ids prefixed" in r.output
    assert validate_store(tmp_path / "m.h5") == []
    with Store(acdc_store) as s, Store(tmp_path / "m.h5") as m:
        n = len(s)
        ids = s.patients["id"].tolist()
        stem = acdc_store.stem
        assert m.patients["id"].tolist() == [f"{stem}/{p}" for p in ids] + [f"again/{p}" for p in ids]
        assert m.meta["patient"][n:].tolist() == [f"again/{p}" for p in s.meta["patient"]]
        assert np.array_equal(m.meta["source_spacing"][n:], s.meta["source_spacing"])  # extra meta kept
        assert np.array_equal(m.file["scribbles"][n:], s.file["scribbles"][()])
        assert np.array_equal(m.patients["group"][len(ids):], s.patients["group"])


def test_merge_refuses_bad_inputs(two_stores: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = two_stores
    big = folder_store(tmp_path, "big", ["background", "lung"], ["x"], size=40)
    r = run("merge", a, big, "--out", tmp_path / "m.h5")
    assert r.exit_code == 1 and "big.h5: image size 40x40 differs" in r.output
    assert not (tmp_path / "m.h5").exists() and not list(tmp_path.glob(".m.h5*"))
    r = run("merge", a, a, "--out", tmp_path / "m.h5")
    assert r.exit_code == 1 and "given twice" in r.output
    r = run("merge", a, big, "--out", a)
    assert r.exit_code == 1 and "one of the inputs" in r.output
    (tmp_path / "m.h5").write_bytes(b"")
    r = run("merge", a, "--out", tmp_path / "m.h5")
    assert r.exit_code == 1 and "--overwrite" in r.output
    r = run("merge", a, tmp_path / "nope.h5", "--out", tmp_path / "n.h5")
    assert r.exit_code == 1 and "nope.h5: no such store file" in r.output


def test_compressed_copy_and_re_encoding_give_the_same_store(two_stores: tuple[Path, Path], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from datakit.store.chunks import ImageFormat

    a, b = two_stores
    with monkeypatch.context() as m:  # the fast path copies image chunks as they are: never re-encodes
        m.setattr(ImageFormat, "encode", lambda *args: pytest.fail("an image chunk was re-encoded"))
        merge_stores([a, b], tmp_path / "fast.h5", chunk=2)
    merge_stores([a, b], tmp_path / "slow.h5", chunk=3, copy_compressed=False)
    with Store(tmp_path / "fast.h5") as f, Store(tmp_path / "slow.h5") as s:
        for name in ("images", "masks", "scribbles", "label_state"):
            assert np.array_equal(f.file[name][()], s.file[name][()]), name
    assert validate_store(tmp_path / "slow.h5") == []


def test_keypoint_names_are_united(tmp_path: Path) -> None:
    from tests.folder_data import small_store

    m = [np.zeros((8, 8), np.uint8)] * 4
    a = small_store(tmp_path / "a.h5", classes=["background", "LV"], masks=m, keypoint_names=["apex"], dataset="echo")
    b = small_store(tmp_path / "b.h5", classes=["background", "LV"], masks=m, patient_prefix="q", dataset="mri")
    merge_stores([b, a], tmp_path / "m.h5")
    assert validate_store(tmp_path / "m.h5") == []
    with Store(tmp_path / "m.h5") as s:
        assert s.keypoint_names == ["apex"]
        kp = s.file["keypoints"][()]
        assert np.isnan(kp[:4, 0, :2]).all() and (kp[:4, 0, 2] == -1).all()  # b never annotated the apex
        assert kp[4:, 0].tolist() == [[i + 1.0, 2.0, 1.0] for i in range(4)]


def test_merge_of_stores_with_different_image_storage_is_exact(acdc_phantoms, tmp_path) -> None:
    """A gzip store and an uncompressed one: chunks are copied only where the filters match."""
    from datakit.sources.acdc import AcdcSource

    a, b, out = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "ab.h5"
    gzip = ImageFormat("float32", "gzip")
    convert(AcdcSource(acdc_phantoms, size=64), ConvertOptions(out=a, workers=1, image_format=gzip))
    convert(AcdcSource(acdc_phantoms, size=64), ConvertOptions(out=b, workers=1))
    r = runner.invoke(app, ["merge", str(a), str(b), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert validate_store(out) == []
    with Store(a) as sa, Store(b) as sb, Store(out) as so:
        assert so.file["images"].compression == "gzip"  # the first input's storage
        n = len(sa)
        np.testing.assert_array_equal(so.file["images"][:n], sa.file["images"][()])
        np.testing.assert_array_equal(so.file["images"][n:], sb.file["images"][()])
        np.testing.assert_array_equal(so.file["masks"][n:], sb.file["masks"][()])



def test_merge_keeps_float16_only_when_every_input_is_float16(acdc_phantoms, tmp_path, monkeypatch) -> None:
    """Two float16 stores merge into float16, chunks copied as they are; with a float32 input the
    merge is float32 (nothing rounded) and the float16 images are cast exactly."""
    from datakit.sources.acdc import AcdcSource

    half, whole = ImageFormat("float16", "gzip"), ImageFormat("float32", "gzip")
    a, b, c = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "c.h5"
    convert(AcdcSource(acdc_phantoms, size=64), ConvertOptions(out=a, workers=1, image_format=half))
    convert(AcdcSource(acdc_phantoms, size=64), ConvertOptions(out=b, workers=1, image_format=half))
    convert(AcdcSource(acdc_phantoms, size=64), ConvertOptions(out=c, workers=1, image_format=whole))
    with monkeypatch.context() as m:
        m.setattr(ImageFormat, "encode", lambda *args: pytest.fail("an image chunk was re-encoded"))
        merge_stores([a, b], tmp_path / "ab.h5")
    merge_stores([a, c], tmp_path / "ac.h5")
    for name in ("ab.h5", "ac.h5"):
        assert validate_store(tmp_path / name) == []
    with Store(a) as sa, Store(c) as sc, Store(tmp_path / "ab.h5") as ab, Store(tmp_path / "ac.h5") as ac:
        n = len(sa)
        assert ab.file["images"].dtype == np.float16 and ac.file["images"].dtype == np.float32
        np.testing.assert_array_equal(ab.file["images"][:n], sa.file["images"][()])
        np.testing.assert_array_equal(ac.file["images"][:n], sa.file["images"][()].astype(np.float32))
        np.testing.assert_array_equal(ac.file["images"][n:], sc.file["images"][()])

def test_only_clashing_inputs_are_renamed() -> None:
    from types import SimpleNamespace

    import numpy as np

    from datakit.merge import _labels

    def store(dataset: str, stem: str):
        return SimpleNamespace(meta={"dataset": np.array([dataset])}, attrs={}, path=Path(f"/x/{stem}.h5"))

    got = _labels([store("acdc", "a"), store("folder:lung", "l1"), store("folder:lung", "l2")])
    assert got == ["acdc", "l1", "l2"]
    got = _labels([store("folder:lung", "same"), store("folder:lung", "same")])
    assert got == ["same0", "same1"]
