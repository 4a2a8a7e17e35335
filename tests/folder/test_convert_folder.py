"""``datakit convert folder``: pairing, mask mappings, letterbox, official splits, subjects, real folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from typer.testing import CliRunner

from datakit.cli import app
from datakit.errors import DatakitError
from datakit.pipeline import ConvertOptions, convert
from datakit.sources.folder import FolderSource
from datakit.store import Store, validate_store
from tests.folder_data import disc, grey_image, write_pairs
from tests.helpers import shared_data, tree_digest

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def convert_store(source: FolderSource, out: Path, **kw) -> Path:
    convert(source, ConvertOptions(out=out, workers=1, progress=False, **kw), log=lambda m: None)
    assert validate_store(out) == []
    return out


def test_png_class_index_masks_convert_with_letterbox(tmp_path: Path) -> None:
    fractions = write_pairs(tmp_path / "src", ["a", "b", "c"], size=(40, 80), mask_scale=1)
    out = convert_store(FolderSource(tmp_path / "src", size=32), tmp_path / "s.h5")
    with Store(out) as s:
        assert len(s) == 3 and s.channels == 1 and s.image_size == (32, 32)
        assert s.classes == ["background", "foreground"]
        assert s.file["images"].attrs["normalization"] == "scale:1/255"
        assert list(s.meta["dataset"]) == ["folder:src"] * 3
        assert list(s.meta["source"]) == ["images/a.png", "images/b.png", "images/c.png"]
        masks = s.file["masks"][()]
        # 40x80 -> 16x32 content, padded above and below (rows 0-7 and 24-31): background
        assert (masks[:, :8] == 0).all() and (masks[:, 24:] == 0).all()
        content = s.file["images"][0, 0, 8:24]
        assert np.isclose(s.file["images"][0, 0, 0], 0).all() and content.max() > 0.5
        for m, f in zip(masks, fractions, strict=True):
            assert abs(m[8:24].mean() - f) < 0.03
        assert (s.meta["source_shape"] == [40, 80]).all()
        assert s.file["label_state"][()].tolist() == [[1, 1]] * 3


def test_jpeg_masks_need_binarize_and_the_error_says_so(tmp_path: Path) -> None:
    src = tmp_path / "polyps"
    write_pairs(src, ["p1", "p2"], ext=".jpg", rgb=True)
    before = tree_digest(src, mtimes=True)
    r = run("convert", "folder", src, "--out", tmp_path / "s.h5")
    assert r.exit_code == 1
    assert "masks/p1.jpg" in r.output and "--binarize 127" in r.output
    assert not (tmp_path / "s.h5").exists() and list(tmp_path.iterdir()) == [src]
    r = run("convert", "folder", src, "--out", tmp_path / "s.h5", "--binarize", "127",
            "--classes", "background,polyp", "-j", "1")
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output
    with Store(tmp_path / "s.h5") as s:
        assert s.channels == 3 and s.classes == ["background", "polyp"]
        assert set(np.unique(s.file["masks"][()]).tolist()) == {0, 1}
    assert validate_store(tmp_path / "s.h5") == []
    assert tree_digest(src, mtimes=True) == before
    r = run("convert", "folder", src, "--out", tmp_path / "s.h5", "--binarize", "127")
    assert r.exit_code == 1 and "--overwrite" in r.output


def test_mask_values_map_grey_levels_and_name_bad_pixels(tmp_path: Path) -> None:
    src = tmp_path / "tissue"
    write_pairs(src, ["t1"], mask_scale=1)
    levels = np.zeros((40, 48), np.uint8)
    levels[:, 16:32], levels[:, 32:] = 128, 255
    Image.fromarray(levels).save(src / "masks" / "t1.png")
    out = convert_store(FolderSource(src, mask_values=[0, 128, 255], classes=["bg", "fat", "gland"], size=48),
                        tmp_path / "s.h5")
    with Store(out) as s:
        row = s.file["masks"][0, 24]
        assert row[:16].tolist() == [0] * 16 and row[16:32].tolist() == [1] * 16 and row[32:].tolist() == [2] * 16
    levels[:2, :5] = 64  # 10 pixels of a grey level that is no class
    Image.fromarray(levels).save(src / "masks" / "t1.png")
    r = run("convert", "folder", src, "--out", tmp_path / "bad.h5", "--mask-values", "0,128,255",
            "--classes", "bg,fat,gland")
    assert r.exit_code == 1
    assert "masks/t1.png" in r.output and "10 pixel(s)" in r.output and "64" in r.output
    assert not (tmp_path / "bad.h5").exists()
    with pytest.raises(DatakitError, match="3 grey levels but there are 2 classes"):
        FolderSource(src, mask_values=[0, 128, 255], classes=["bg", "fat"])


def test_split_subfolders_are_the_official_split(tmp_path: Path) -> None:
    src = tmp_path / "ds"
    for split, names in (("train", ["a", "b", "c"]), ("valid", ["d"]), ("test", ["e", "f"])):
        write_pairs(src / split, names, mask_scale=1)
    source = FolderSource(src, size=32)
    assert source.default_split() == "official"
    out = convert_store(source, tmp_path / "s.h5")
    with Store(out) as s:
        assert s.split_attrs["method"] == "official:folder:ds"
        by_split = {k: sorted(s.meta["patient"][v].tolist()) for k, v in s.splits.items()}
        assert by_split == {"train": ["a", "b", "c"], "valid": ["d"], "test": ["e", "f"]}
        assert s.patients["split_folder"].tolist() == ["train", "train", "train", "valid", "test", "test"]
    # a flat folder has no official split: asking for one is an error that lists the choices
    write_pairs(tmp_path / "flat", ["x", "y", "z"], mask_scale=1)
    r = run("convert", "folder", tmp_path / "flat", "--out", tmp_path / "f.h5", "--split", "official")
    assert r.exit_code == 1 and "no official split" in r.output and not (tmp_path / "f.h5").exists()


def test_tiff_masks_beside_images_grouped_by_subject(tmp_path: Path) -> None:
    """LGG layout: TCGA_<site>_<id>_<date>/<same>_<k>.tif with <same>_<k>_mask.tif, 0/255 masks."""
    src = tmp_path / "lgg"
    subjects = ["TCGA_CS_4941_19960909", "TCGA_DU_5851_19950428", "TCGA_HT_7692_19960724"]
    for si, subject in enumerate(subjects):
        (src / subject).mkdir(parents=True)
        for k in range(1, 4):
            img = np.stack([grey_image(32, 32, si * 10 + k)] * 3, axis=-1)
            img[..., 1] //= 2  # FLAIR / pre / post contrast: three different channels
            tifffile.imwrite(src / subject / f"{subject}_{k}.tif", img)
            tifffile.imwrite(src / subject / f"{subject}_{k}_mask.tif",
                             (disc(32, 32, 16, 16, 4 + k) * 255).astype(np.uint8))
    r = run("convert", "folder", src, "--out", tmp_path / "lgg.h5", "--mask-suffix", "_mask", "--binarize", "127",
            "--patient-regex", r"TCGA_[A-Z0-9]+_[A-Z0-9]+", "--size", "32", "--classes", "background,tumour",
            "--split", "random", "--ratios", "0.34,0.33,0.33", "-j", "2")
    assert r.exit_code == 0, r.output
    assert validate_store(tmp_path / "lgg.h5") == []
    with Store(tmp_path / "lgg.h5") as s:
        assert s.channels == 3 and len(s) == 9
        assert sorted(s.patients["id"].tolist()) == ["TCGA_CS_4941", "TCGA_DU_5851", "TCGA_HT_7692"]
        for idx in s.splits.values():  # each split holds whole subjects
            assert len(idx) == 3 and len(set(s.meta["patient"][idx].tolist())) == 1
        assert np.isclose(s.file["masks"][()].astype(bool).sum(axis=(1, 2)),
                          [disc(32, 32, 16, 16, 4 + k).sum() for k in (1, 2, 3)] * 3, rtol=0.05).all()
    r = run("convert", "folder", src, "--out", tmp_path / "x.h5", "--binarize", "127")
    assert r.exit_code == 1 and "--mask-suffix" in r.output


def test_bmp_grey_and_rgb_sizes_and_unpaired_files(tmp_path: Path) -> None:
    src = tmp_path / "mixed"
    write_pairs(src, ["wide"], size=(20, 60), ext=".bmp", mask_scale=1, rgb=True)
    write_pairs(src, ["tall"], size=(60, 20), ext=".bmp", mask_scale=1, seed=5)
    out = convert_store(FolderSource(src, size=30), tmp_path / "s.h5")
    with Store(out) as s:
        assert s.channels == 3  # one colour image makes the store RGB; grey ones are replicated
        tall = int(np.flatnonzero(s.meta["patient"] == "tall")[0])
        img = s.file["images"][tall]
        assert np.array_equal(img[0], img[1]) and np.array_equal(img[0], img[2])
        m = s.file["masks"][tall]
        assert (m[:, :10] == 0).all() and (m[:, 20:] == 0).all()  # 60x20 -> 30x10: padded left and right
    (src / "images" / "extra.bmp").write_bytes((src / "images" / "tall.bmp").read_bytes())
    with pytest.raises(DatakitError, match=r"1 image\(s\) without a mask: extra"):
        FolderSource(src)
    (src / "images" / "extra.bmp").unlink()
    (src / "masks" / "tall.bmp").write_bytes(b"not an image")
    r = run("convert", "folder", src, "--out", tmp_path / "b.h5")
    assert r.exit_code == 1 and "masks/tall.bmp" in r.output and "cannot read" in r.output
    assert not (tmp_path / "b.h5").exists() and not list(tmp_path.glob(".b.h5*"))


def test_mask_size_must_match_its_image(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_pairs(src, ["a"], mask_scale=1)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(src / "masks" / "a.png")
    with pytest.raises(DatakitError, match=r"masks/a.png: mask is 10x10 pixels, its image a.png 48x40"):
        convert(FolderSource(src), ConvertOptions(out=tmp_path / "s.h5", workers=1, progress=False))
    assert not list(tmp_path.glob("*.h5*")) and not list(tmp_path.glob(".s.h5*"))


def test_synthetic_scribbles_from_the_masks(tmp_path: Path) -> None:
    from datakit.scribbles import ALGORITHMS, register

    if "test-centre" not in ALGORITHMS:
        @register("test-centre")
        def centre(mask: np.ndarray, n_classes: int, rng: np.random.Generator, **_: object) -> np.ndarray:
            out = np.full(mask.shape, 255, np.uint8)
            out[mask.shape[0] // 2] = mask[mask.shape[0] // 2]  # one row, true classes
            return out

    src = tmp_path / "src"
    write_pairs(src, ["a", "b"], mask_scale=1)
    r = run("convert", "folder", src, "--out", tmp_path / "s.h5", "--scribbles", "synth:test-centre",
            "--size", "48", "-j", "1")
    assert r.exit_code == 0, r.output
    with Store(tmp_path / "s.h5") as s:
        sc, m = s.file["scribbles"][()], s.file["masks"][()]
        assert (sc[:, 24] == m[:, 24]).all() and (sc[:, :24] == 255).all()
        assert set(s.meta["scribble_source"]) == {"synthetic:test-centre"}
        assert json.loads(s.attrs["scribble_synthesis"])["algo"] == "test-centre"
    r = run("convert", "folder", src, "--out", tmp_path / "t.h5", "--scribbles", "synth:nope")
    assert r.exit_code == 1 and "unknown scribble algorithm" in r.output


def test_real_lung_cxr_keeps_each_lung_fraction(tmp_path: Path) -> None:
    root = shared_data("lung_cxr")
    r = run("convert", "folder", root, "--out", tmp_path / "lung.h5", "--binarize", "127",
            "--classes", "background,lung", "-j", "2")
    assert r.exit_code == 0, r.output
    assert validate_store(tmp_path / "lung.h5") == []
    with Store(tmp_path / "lung.h5") as s:
        assert len(s) == 32 and s.channels == 1 and s.image_size == (256, 256)
        masks = s.file["masks"][()]
        for i, rel in enumerate(s.meta["source"]):
            raw = np.asarray(Image.open(root / "masks" / Path(rel).name).convert("L"))
            assert abs(100 * (masks[i] == 1).mean() - 100 * (raw > 127).mean()) < 1.5, rel


def test_real_kvasir_rgb_of_different_sizes(tmp_path: Path) -> None:
    root = shared_data("kvasir_seg")
    out = convert_store(FolderSource(root, binarize=127, classes=["background", "polyp"]), tmp_path / "k.h5")
    with Store(out) as s:
        assert s.channels == 3 and len(s) == 5
        shapes = {tuple(x) for x in s.meta["source_shape"].tolist()}
        assert len(shapes) > 1
        for i in range(len(s)):
            h, w = s.meta["source_shape"][i]
            scale = float(s.meta["letterbox_scale"][i])
            assert np.isclose(scale, 256 / max(h, w))
            img = s.file["images"][i]
            assert not np.array_equal(img[0], img[1])  # colour kept
            fg = (s.file["masks"][i] == 1).mean() * 256 * 256 / (h * w * scale * scale)
            raw = np.asarray(Image.open(root / s.meta["source"][i].replace("images", "masks")).convert("L"))
            assert abs(fg - (raw > 127).mean()) < 0.02


def test_sixteen_bit_images_get_a_percentile_normalisation(tmp_path: Path) -> None:
    src = tmp_path / "mri"
    write_pairs(src, ["s1", "s2"], ext=".png", mask_scale=1)
    for name in ("s1", "s2"):
        tifffile.imwrite(src / "images" / f"{name}.tif", grey_image(40, 48, 3).astype(np.uint16) * 200)
        (src / "images" / f"{name}.png").unlink()
    source = FolderSource(src, size=48)
    assert source.norm == "percentile-iqr" and source.normalization == "percentile_iqr:5-95"
    out = convert_store(source, tmp_path / "s.h5")
    with Store(out) as s:
        assert s.file["images"].attrs["normalization"] == "percentile_iqr:5-95"
        assert abs(float(np.median(s.file["images"][0, 0, 4:44]))) < 0.5  # centred on the median


def test_workers_receive_a_light_source(tmp_path: Path) -> None:
    import pickle

    write_pairs(tmp_path / "src", [f"f{i:02d}" for i in range(30)], size=(16, 16), mask_scale=1)
    source = FolderSource(tmp_path / "src", size=16)
    item = source.items()[3]
    copy = pickle.loads(pickle.dumps(source))
    assert len(pickle.dumps(source)) < 1500  # no per-file lists: sent once per item to the workers
    assert np.array_equal(copy.read(item).samples[0].mask, source.read(item).samples[0].mask)
    out = tmp_path / "s.h5"
    convert(source, ConvertOptions(out=out, workers=2, progress=False), log=lambda m: None)
    assert validate_store(out) == []
    with Store(out) as s:
        assert s.meta["patient"].tolist() == [f"f{i:02d}" for i in range(30)]


def test_shrinking_blurs_first_so_fine_texture_does_not_alias(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_pairs(src, ["fine"], size=(256, 256), mask_scale=1)
    yy, xx = np.mgrid[:256, :256]
    Image.fromarray((((yy // 2 + xx // 2) % 2) * 255).astype(np.uint8)).save(src / "images" / "fine.png")
    out = convert_store(FolderSource(src, size=40), tmp_path / "s.h5")
    with Store(out) as s:
        img = s.file["images"][0, 0]
    assert abs(float(img.mean()) - 0.5) < 0.05 and float(img.std()) < 0.1  # a 2-pixel checkerboard is grey


def test_one_bit_masks_are_classes_0_and_1(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_pairs(src, ["a"], size=(16, 16), mask_scale=1)
    m = disc(16, 16, 8, 8, 4)
    Image.fromarray(m).convert("1").save(src / "masks" / "a.png")  # a bilevel PNG, mode "1"
    assert Image.open(src / "masks" / "a.png").mode == "1"
    out = convert_store(FolderSource(src, size=16), tmp_path / "s.h5")
    with Store(out) as s:
        assert np.array_equal(s.file["masks"][0], m.astype(np.uint8))


def test_other_folder_names_and_suffixed_masks(tmp_path: Path) -> None:
    """'Chest Xray Masks and Labels' layout: CXR_png/CHNCXR_0001_0.png with masks/CHNCXR_0001_0_mask.png."""
    src = tmp_path / "cxr"
    write_pairs(src, ["CHNCXR_0001_0", "CHNCXR_0002_1"], size=(24, 24))
    (src / "images").rename(src / "CXR_png")
    for p in (src / "masks").iterdir():
        p.rename(p.with_name(p.stem + "_mask.png"))
    r = run("convert", "folder", src, "--out", tmp_path / "a.h5", "--binarize", "127")
    assert r.exit_code == 1 and "--images-dir" in r.output
    r = run("convert", "folder", src, "--out", tmp_path / "a.h5", "--binarize", "127", "--images-dir", "CXR_png")
    assert r.exit_code == 1 and "2 mask file(s) do not end with --mask-suffix" not in r.output
    assert "without a mask" in r.output and "--mask-suffix" in r.output
    r = run("convert", "folder", src, "--out", tmp_path / "a.h5", "--binarize", "127", "--images-dir", "CXR_png",
            "--mask-suffix", "_mask", "--size", "24", "-j", "1")
    assert r.exit_code == 0, r.output
    with Store(tmp_path / "a.h5") as s:
        assert s.meta["patient"].tolist() == ["CHNCXR_0001_0", "CHNCXR_0002_1"]
        assert s.meta["source"].tolist() == ["CXR_png/CHNCXR_0001_0.png", "CXR_png/CHNCXR_0002_1.png"]


@pytest.mark.parametrize("mode", ["1", "P"])
def test_binarize_keeps_one_bit_and_palette_masks(tmp_path: Path, mode: str) -> None:
    """A 1-bit or black/white palette mask thresholded at 127 keeps its foreground (found in review)."""
    from datakit.store import Store

    (tmp_path / "src" / "images").mkdir(parents=True)
    (tmp_path / "src" / "masks").mkdir()
    for i in range(3):
        Image.fromarray(np.full((40, 40), 100 + i, np.uint8)).save(tmp_path / "src" / "images" / f"c{i}.png")
        m = np.zeros((40, 40), np.uint8)
        m[10:20, 5:25] = 255
        if mode == "1":
            im = Image.fromarray(m).convert("1")
        else:  # a two-colour palette: indices 0/1, colours black/white
            im = Image.fromarray((m > 0).astype(np.uint8), mode="P")
            im.putpalette([0, 0, 0, 255, 255, 255])
        im.save(tmp_path / "src" / "masks" / f"c{i}.png")
    out = tmp_path / "s.h5"
    r = CliRunner().invoke(app, ["convert", "folder", str(tmp_path / "src"), "--out", str(out), "--binarize", "127",
                                 "--classes", "background,fg", "--size", "40", "--workers", "1"])
    assert r.exit_code == 0, r.output
    with Store(out) as s:
        for i in range(3):
            assert (s[i]["mask"] == 1).sum() == 200 and s[i]["label_state"].tolist() == [1, 1]


def test_float16_refuses_raw_intensities_it_cannot_hold(tmp_path: Path) -> None:
    """16-bit images kept raw (--norm none) reach 65535 > float16's 65504: exit 1 naming the file, no
    store; with --on-error skip the other image converts; normalised, the same folder converts."""
    src = tmp_path / "src"
    write_pairs(src, ["a", "b"])
    bright = np.full((40, 48), 1000, np.uint16)
    bright[8:24, 8:24] = 65535
    (src / "images" / "b.png").unlink()
    Image.fromarray(bright).save(src / "images" / "b.png")
    before = tree_digest(src)
    r = run("convert", "folder", src, "--out", tmp_path / "s.h5", "--norm", "none", "--image-dtype", "float16",
            "--binarize", "127", "-j", "1")
    assert r.exit_code == 1 and "images/b.png: image values reach 65535, beyond float16's range" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "s.h5").exists()
    r = run("convert", "folder", src, "--out", tmp_path / "s.h5", "--norm", "none", "--image-dtype", "float16",
            "--binarize", "127", "-j", "1", "--on-error", "skip")
    assert r.exit_code == 0 and "1 samples" in r.output and "skipped b" in r.output, r.output
    r = run("convert", "folder", src, "--out", tmp_path / "n.h5", "--image-dtype", "float16", "--binarize", "127",
            "-j", "1")
    assert r.exit_code == 0, r.output
    assert tree_digest(src) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.h5", "s.h5", "src"]
