"""Hostile and broken inputs to the four converters: one generated source, broken one way per case.

Each case: exit 1 (or 0 where the input is odd but valid), the file and key named, no traceback,
nothing written anywhere (no store, no temporary), the source byte-identical afterwards, and nothing
outside the source read into the output (``OUTSIDE-SECRET`` never appears).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.robustness import broken
from tests.robustness.helpers import copy_source, datakit_app, run_case

SECRET = "OUTSIDE-SECRET"
Case = tuple[str, Callable[[Path, Path], list[str]], list[str]]


# -- ACDC ------------------------------------------------------------------------------------------
def _acdc(src: Path) -> Path:
    return next(src.rglob("patient001"))


def _ed(src: Path, suffix: str = "") -> Path:
    return _acdc(src) / f"patient001_frame01{suffix}.nii.gz"


def _cfg(key: str, value: str) -> Callable[[Path, Path], list[str]]:
    def mutate(src: Path, ws: Path) -> list[str]:
        broken.edit_cfg(_acdc(src) / "Info.cfg", key, value)
        return []
    return mutate


def _on(target: Callable[[Path], Path], action: Callable[..., Path], *a: object) -> Callable[[Path, Path], list[str]]:
    def mutate(src: Path, ws: Path) -> list[str]:
        p = target(src)
        action(p, *a)
        return [p.name]
    return mutate


def _info(src: Path) -> Path:
    return _acdc(src) / "Info.cfg"


def _replace_with_folder(p: Path) -> Path:
    p.unlink()
    p.mkdir()
    return p


def _write(data: bytes) -> Callable[[Path], Path]:
    def action(p: Path) -> Path:
        p.write_bytes(data)
        return p
    return action


def _gt_value(p: Path) -> Path:
    import nibabel as nib

    data = np.asarray(nib.load(p).dataobj).copy()
    data[np.unravel_index(np.arange(5), data.shape)] = 7
    return broken.rewrite_nifti(p, data)


def _gt_shape(p: Path) -> Path:
    import nibabel as nib

    data = np.asarray(nib.load(p).dataobj)[:-2]
    return broken.rewrite_nifti(p, np.ascontiguousarray(data))


def _scribble_value(p: Path) -> Path:
    import nibabel as nib

    data = np.asarray(nib.load(p).dataobj).copy()
    data[np.unravel_index(np.arange(5), data.shape)] = 9
    return broken.rewrite_nifti(p, data)


def _zooms(*z: float) -> Callable[[Path], Path]:
    return lambda p: broken.rewrite_nifti(p, zooms=z)


def _remove(p: Path) -> Path:
    p.unlink()
    return p


def _empty_source(src: Path, ws: Path) -> list[str]:
    shutil.rmtree(src / "training")
    return [f"{src}: no acdc patients found"]


ACDC_CASES: list[Case] = [
    ("info-fifo", _on(_info, broken.fifo), ["FIFO", "not a regular file"]),
    ("info-folder", _on(_info, _replace_with_folder), ["a folder"]),
    ("info-missing", _on(_info, _remove), ["not found"]),
    ("info-not-utf8", _on(_info, _write(b"ED: 1\nGroup: \xff\xfe\n")), ["not UTF-8"]),
    ("info-stray-line", _on(_info, _write(b"ED: 1\nES 7\n")), ["line 2"]),
    ("info-ed-inf", _cfg("ED", "inf"), ["Info.cfg", "ED"]),
    ("info-ed-nan", _cfg("ED", "nan"), ["Info.cfg", "ED"]),
    ("info-ed-1e300", _cfg("ED", "1e300"), ["Info.cfg", "ED"]),
    ("info-ed-zero", _cfg("ED", "0"), ["Info.cfg", "ED"]),
    ("info-es-fraction", _cfg("ES", "2.5"), ["Info.cfg", "ES"]),
    ("info-es-text", _cfg("ES", "seven"), ["Info.cfg", "ES"]),
    ("info-height-inf", _cfg("Height", "inf"), ["Info.cfg", "Height"]),
    ("info-weight-nan", _cfg("Weight", "nan"), ["Info.cfg", "Weight"]),
    ("info-nbframe-1e300", _cfg("NbFrame", "-1e300"), ["Info.cfg", "NbFrame"]),
    ("image-fifo", _on(_ed, broken.fifo), ["FIFO"]),
    ("gt-fifo", _on(lambda s: _ed(s, "_gt"), broken.fifo), ["FIFO"]),
    ("scribble-fifo", _on(lambda s: _ed(s, "_scribble"), broken.fifo), ["FIFO"]),
    ("image-nan-voxels", _on(_ed, broken.float_voxels, float("nan")), ["3 voxel(s) are NaN or infinite"]),
    ("image-inf-voxels", _on(_ed, broken.float_voxels, float("inf"), 5), ["5 voxel(s) are NaN or infinite"]),
    ("image-minus-inf-voxels", _on(_ed, broken.float_voxels, float("-inf"), 1), ["NaN or infinite"]),
    ("image-complex64", _on(_ed, broken.complex_voxels), ["complex"]),
    ("image-pixdim-0", _on(_ed, _zooms(0.0, 0.0, 10.0)), ["voxel spacing"]),
    ("image-pixdim-1e-6", _on(_ed, _zooms(1e-6, 1e-6, 10.0)), ["voxel spacing"]),
    ("image-pixdim-1e6", _on(_ed, _zooms(1e6, 1e6, 10.0)), ["voxel spacing"]),
    ("image-slice-spacing-0", _on(_ed, _zooms(1.5, 1.5, 0.0)), ["voxel spacing"]),
    ("image-nifti2-promises-1e13", _on(_ed, broken.nifti2_promising, (100_000, 100_000, 1000)), ["promises"]),
    ("image-nifti2-promises-3GB", _on(_ed, broken.nifti2_promising, (4000, 4000, 100)), ["promises"]),
    ("image-nifti2-promises-1.6GB", _on(_ed, broken.nifti2_promising, (4000, 4000, 100), np.int8),
     ["truncated", "promises"]),
    ("image-gzip-trailing-zeros", _on(_ed, broken.gzip_trailing_zeros), ["more than", "header promises"]),
    ("image-gzip-truncated", _on(_ed, broken.truncate, 0.5), ["truncated"]),
    ("image-not-gzip", _on(_ed, _write(b"this is not a NIfTI file" * 40)), ["not a valid gzip"]),
    ("image-empty", _on(_ed, _write(b"")), ["truncated gzip stream"]),
    ("gt-value-7", _on(lambda s: _ed(s, "_gt"), _gt_value), ["7"]),
    ("gt-other-shape", _on(lambda s: _ed(s, "_gt"), _gt_shape), ["differs"]),
    ("gt-missing", _on(lambda s: _ed(s, "_gt"), _remove), ["missing ED frame file"]),
    ("scribble-value-9", _on(lambda s: _ed(s, "_scribble"), _scribble_value), ["scribble values"]),
    ("no-patients", _empty_source, []),
]


@pytest.mark.parametrize("case", ACDC_CASES, ids=[c[0] for c in ACDC_CASES])
def test_acdc(case: Case, acdc_src: Path, tmp_path: Path) -> None:
    _, mutate, names = case
    src = copy_source(acdc_src, tmp_path)
    extra = mutate(src, tmp_path)
    run_case(datakit_app(), ["convert", "acdc", src, "--out", tmp_path / "out" / "x.h5", "-j", "1", "--size", "32",
                             "--spacing", "6"], tmp_path, names=[*names, *extra], absent=[SECRET])


# -- CAMUS, MHD/RAW release -------------------------------------------------------------------------
def _cam(src: Path, name: str) -> Path:
    return next(src.rglob("patient0001")) / f"patient0001_{name}"


def _mhd(**fields: str) -> Callable[[Path, Path], list[str]]:
    def mutate(src: Path, ws: Path) -> list[str]:
        p = _cam(src, "2CH_ED.mhd")
        broken.edit_mhd(p, **{k: v.replace("{ws}", str(ws)) for k, v in fields.items()})
        return [p.name]
    return mutate


def _raw_link_outside(src: Path, ws: Path) -> list[str]:
    raw = _cam(src, "2CH_ED.raw")
    (ws / "outside" / "ed.raw").write_bytes(raw.read_bytes())  # a plausible size: only the link is wrong
    raw.unlink()
    raw.symlink_to(ws / "outside" / "ed.raw")
    return [_cam(src, "2CH_ED.mhd").name, "ElementDataFile", "symbolic link"]


def _raw_float_nan(src: Path, ws: Path) -> list[str]:
    mhd, raw = _cam(src, "2CH_ED.mhd"), _cam(src, "2CH_ED.raw")
    data = np.frombuffer(raw.read_bytes(), np.uint8).astype(np.float32)
    data[:4] = np.nan
    raw.write_bytes(data.tobytes())
    broken.edit_mhd(mhd, ElementType="MET_FLOAT")
    return [raw.name if False else mhd.name, "NaN or infinite"]


def _raw_gt_value(src: Path, ws: Path) -> list[str]:
    raw = _cam(src, "2CH_ED_gt.raw")
    data = bytearray(raw.read_bytes())
    data[:10] = bytes([9] * 10)
    raw.write_bytes(bytes(data))
    return ["2CH_ED_gt.mhd"]


def _cam_cfg(key: str, value: str) -> Callable[[Path, Path], list[str]]:
    def mutate(src: Path, ws: Path) -> list[str]:
        p = next(src.rglob("Info_2CH.cfg"))
        broken.edit_cfg(p, key, value)
        return [p.name, key]
    return mutate


def _cam_on(name: str, action: Callable[..., Path], *a: object) -> Callable[[Path, Path], list[str]]:
    def mutate(src: Path, ws: Path) -> list[str]:
        p = _cam(src, name)
        action(p, *a)
        return [p.name]
    return mutate


def _split_list(relative: str, action: Callable[[Path], Path]) -> Callable[[Path, Path], list[str]]:
    """An official split list (CAMUS listSubGroups/ or database_split/, Unity's labels-*.txt or .json)
    that is not a regular file: named as such, never "not found", never opened (a FIFO would block)."""
    def mutate(src: Path, ws: Path) -> list[str]:
        action(src / relative)
        return [relative.rsplit("/", 1)[-1], "not a regular file"]
    return mutate


def _cfg_fifo(src: Path, ws: Path) -> list[str]:
    p = next(src.rglob("Info_2CH.cfg"))
    broken.fifo(p)
    return [p.name, "FIFO"]


CAMUS_MHD_CASES: list[Case] = [
    ("datafile-relative-escape", _mhd(ElementDataFile="../../../outside/secret.raw"),
     ["ElementDataFile", "leaves the header's folder"]),
    ("datafile-absolute-etc-passwd", _mhd(ElementDataFile="/etc/passwd"), ["ElementDataFile", "absolute"]),
    ("datafile-absolute-outside", _mhd(ElementDataFile="{ws}/outside/secret.raw"), ["ElementDataFile", "absolute"]),
    ("datafile-windows-absolute", _mhd(ElementDataFile="C:\\outside\\secret.raw"), ["ElementDataFile", "absolute"]),
    ("datafile-symlink-outside", _raw_link_outside, []),
    ("datafile-list", _mhd(ElementDataFile="LIST"), ["multi-file"]),
    ("datafile-pattern", _mhd(ElementDataFile="../x%03d.raw 1 3 1"), ["multi-file"]),
    ("compressed-over-raw", _mhd(CompressedData="True"), ["CompressedData", "2CH_ED.raw", "not a zlib stream"]),
    ("datafile-missing", _mhd(ElementDataFile="nothere.raw"), ["nothere.raw", "missing"]),
    ("element-type-unknown", _mhd(ElementType="MET_COMPLEX_FOO"), ["not a MetaImage header"]),
    ("dimsize-negative", _mhd(DimSize="-47 81"), ["negative dimension"]),
    ("raw-fifo", _cam_on("2CH_ED.raw", broken.fifo), ["FIFO"]),
    ("mhd-fifo", _cam_on("2CH_ED.mhd", broken.fifo), ["FIFO"]),
    ("raw-truncated", _cam_on("2CH_ED.raw", broken.truncate, 0.5), ["truncated"]),
    ("dimsize-huge", _mhd(DimSize="100000 100000"), ["promises"]),
    ("spacing-zero", _mhd(ElementSpacing="0 0"), ["spacing"]),
    ("spacing-1e6", _mhd(ElementSpacing="1e6 1e6"), ["spacing"]),
    ("spacing-1e-6", _mhd(ElementSpacing="1e-6 1e-6"), ["spacing"]),
    ("float-nan-pixels", _raw_float_nan, []),
    ("gt-value-9", _raw_gt_value, []),
    ("info-ed-inf", _cam_cfg("ED", "inf"), []),
    ("info-ed-nan", _cam_cfg("ED", "nan"), []),
    ("info-ed-1e300", _cam_cfg("ED", "1e300"), []),
    ("info-age-inf", _cam_cfg("Age", "-inf"), []),
    ("info-fifo", _cfg_fifo, []),
    ("split-list-fifo", _split_list("listSubGroups/subGroup1_training.txt", broken.fifo), ["FIFO"]),
    ("split-list-folder", _split_list("listSubGroups/subGroup1_validation.txt", _replace_with_folder),
     ["is a folder"]),
]


@pytest.mark.parametrize("case", CAMUS_MHD_CASES, ids=[c[0] for c in CAMUS_MHD_CASES])
def test_camus_mhd(case: Case, camus_mhd_src: Path, tmp_path: Path) -> None:
    _, mutate, names = case
    src = copy_source(camus_mhd_src, tmp_path)
    extra = mutate(src, tmp_path)
    run_case(datakit_app(), ["convert", "camus", src, "--out", tmp_path / "out" / "x.h5", "-j", "1", "--size", "16",
                             "--views", "2CH"], tmp_path, names=[*names, *extra], absent=[SECRET])


# -- CAMUS, NIfTI release -----------------------------------------------------------------------------
def _nii_spacing(p: Path) -> Path:
    import nibabel as nib

    img = nib.load(p)
    return broken.rewrite_nifti(p, np.asarray(img.dataobj), zooms=(1e6,) * len(img.shape))


CAMUS_NIFTI_CASES: list[Case] = [
    ("ed-gzip-trailing-zeros", _cam_on("2CH_ED.nii.gz", broken.gzip_trailing_zeros), ["more than"]),
    ("ed-fifo", _cam_on("2CH_ED.nii.gz", broken.fifo), ["FIFO"]),
    ("ed-nifti2-promises-1e13", _cam_on("2CH_ED.nii.gz", broken.nifti2_promising, (100_000, 100_000, 1000)),
     ["promises"]),
    ("ed-complex64", _cam_on("2CH_ED.nii.gz", broken.complex_voxels), ["complex"]),
    ("ed-nan-pixels", _cam_on("2CH_ED.nii.gz", broken.float_voxels, float("nan")), ["NaN or infinite"]),
    ("ed-spacing-1e6", _cam_on("2CH_ED.nii.gz", _nii_spacing), ["spacing"]),
    ("ed-truncated", _cam_on("2CH_ED.nii.gz", broken.truncate, 0.6), ["truncated"]),
    ("split-list-fifo", _split_list("database_split/subgroup_testing.txt", broken.fifo), ["FIFO"]),
]


@pytest.mark.parametrize("case", CAMUS_NIFTI_CASES, ids=[c[0] for c in CAMUS_NIFTI_CASES])
def test_camus_nifti(case: Case, camus_nifti_src: Path, tmp_path: Path) -> None:
    _, mutate, names = case
    src = copy_source(camus_nifti_src, tmp_path)
    extra = mutate(src, tmp_path)
    run_case(datakit_app(), ["convert", "camus", src, "--out", tmp_path / "out" / "x.h5", "-j", "1", "--size", "16",
                             "--views", "2CH"], tmp_path, names=[*names, *extra], absent=[SECRET])


# -- Unity ------------------------------------------------------------------------------------------
def _labels(src: Path) -> Path:
    return src / "labels-all.json"


def _first_png(src: Path) -> Path:
    return sorted((src / "png-cache").rglob("*.png"))[0]


def _labels_text(text: bytes) -> Callable[[Path, Path], list[str]]:
    def mutate(src: Path, ws: Path) -> list[str]:
        _labels(src).write_bytes(text)
        return ["labels-all.json"]
    return mutate


def _labels_fifo(src: Path, ws: Path) -> list[str]:
    broken.fifo(_labels(src))
    return ["labels-all.json", "FIFO"]


def _png(action: Callable[..., Path], *a: object) -> Callable[[Path, Path], list[str]]:
    def mutate(src: Path, ws: Path) -> list[str]:
        p = _first_png(src)
        action(p, *a)
        return [p.name]
    return mutate


def _key(new_key: Callable[[str, Path], str]) -> Callable[[Path, Path], list[str]]:
    """Rename the first labels entry's key (the image it names)."""
    def mutate(src: Path, ws: Path) -> list[str]:
        data = json.loads(_labels(src).read_text())
        first = sorted(data)[0]
        key = new_key(first, ws)
        data = {key if k == first else k: v for k, v in data.items()}
        _labels(src).write_text(json.dumps(data))
        return [key]
    return mutate


def _png_cache_link_outside(src: Path, ws: Path) -> list[str]:
    cache = src / "png-cache"
    shutil.move(cache, ws / "outside" / "png-cache")
    cache.symlink_to(ws / "outside" / "png-cache")
    return ["symbolic link"]


UNITY_CASES: list[Case] = [
    ("labels-nested-deep", _labels_text(b"[" * 200_000 + b"]" * 200_000), ["nested too deeply"]),
    ("labels-nested-deep-objects", _labels_text(b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
     ["nested too deeply"]),
    ("labels-fifo", _labels_fifo, []),
    ("labels-not-json", _labels_text(b"{not json"), ["not valid JSON"]),
    ("labels-empty", _labels_text(b""), ["not valid JSON"]),
    ("labels-not-utf8", _labels_text(b'{"\xff\xfe": 1}'), ["not UTF-8"]),
    ("labels-a-list", _labels_text(b"[1, 2, 3]"), ["expected a JSON object"]),
    ("png-bomb-header", _png(broken.png_bomb), ["cannot read PNG"]),
    ("png-bomb-moderate", _png(broken.png_bomb, 30_000, 30_000), ["cannot read PNG"]),
    ("png-fifo", _png(broken.fifo), ["is a FIFO, not a regular file"]),
    ("png-truncated", _png(broken.truncate, 0.3), ["cannot read PNG"]),
    ("png-garbage", _png(_write(b"GIF89a not a png")), ["cannot read PNG"]),
    ("key-relative-escape", _key(lambda k, ws: f"../outside/{k}"), ["resolves outside SRC"]),
    ("key-absolute", _key(lambda k, ws: str(ws / "outside" / k)), ["absolute path"]),
    ("key-not-unity-name", _key(lambda k, ws: "passwd"), ["not a Unity image name"]),
    ("png-cache-symlink-outside", _png_cache_link_outside, []),
    ("split-txt-fifo", _split_list("labels-tune.txt", lambda p: broken.fifo(p.with_suffix(".json").unlink() or p)),
     ["FIFO"]),
    ("split-json-fifo", _split_list("labels-ival.json", broken.fifo), ["FIFO"]),
    ("split-txt-folder", _split_list("labels-train.txt", lambda p: _replace_with_folder(
        p.with_suffix(".json").unlink() or p)), ["is a folder"]),
]


@pytest.mark.parametrize("case", UNITY_CASES, ids=[c[0] for c in UNITY_CASES])
def test_unity(case: Case, unity_src: Path, tmp_path: Path) -> None:
    _, mutate, names = case
    src = copy_source(unity_src, tmp_path)
    extra = mutate(src, tmp_path)
    run_case(datakit_app(), ["splines-to-masks", "unity", src, "--out", tmp_path / "out" / "x.h5", "-j", "1",
                             "--size", "32"], tmp_path, names=[*names, *extra], absent=[SECRET])


# -- generic folder -----------------------------------------------------------------------------------
def _img(name: str = "a.png", folder: str = "images") -> Callable[[Path], Path]:
    return lambda src: src / folder / name


def _swap_to_tif(action: Callable[..., Path], *a: object) -> Callable[[Path, Path], list[str]]:
    """Replace images/a.png by images/a.tif, written by ``action``."""
    def mutate(src: Path, ws: Path) -> list[str]:
        (src / "images" / "a.png").unlink()
        p = src / "images" / "a.tif"
        action(p, *a)
        return [p.name]
    return mutate


def _nan_image() -> np.ndarray:
    a = np.ones((24, 32), np.float32)
    a[3, 4] = np.nan
    return a


def _inf_image() -> np.ndarray:
    a = np.ones((24, 32), np.float32)
    a[:2, :2] = np.inf
    return a


def _mask_value(p: Path) -> Path:
    from PIL import Image

    Image.fromarray(np.full((24, 32), 7, np.uint8)).save(p)
    return p


def _mask_size(p: Path) -> Path:
    from PIL import Image

    Image.fromarray(np.zeros((10, 10), np.uint8)).save(p)
    return p


def _mask_colour(p: Path) -> Path:
    from PIL import Image

    rgb = np.zeros((24, 32, 3), np.uint8)
    rgb[..., 0] = 1
    Image.fromarray(rgb).save(p)
    return p


FOLDER_CASES: list[Case] = [
    ("image-fifo", _on(_img(), broken.fifo), ["FIFO"]),
    ("mask-fifo", _on(_img("a.png", "masks"), broken.fifo), ["FIFO"]),
    ("tiff-header-promises-14GB", _swap_to_tif(broken.tiff_promising), ["promises"]),
    ("tiff-header-promises-3GB", _swap_to_tif(broken.tiff_promising, 30_000, 30_000), ["promises"]),
    ("png-bomb", _on(_img(), broken.png_bomb), ["DecompressionBombError"]),
    ("float-tiff-nan", _swap_to_tif(broken.float_tiff, _nan_image()), ["1 voxel(s) are NaN or infinite"]),
    ("float-tiff-inf", _swap_to_tif(broken.float_tiff, _inf_image()), ["4 voxel(s) are NaN or infinite"]),
    ("complex-tiff", _swap_to_tif(broken.float_tiff, np.ones((24, 32), np.complex64)), ["complex"]),
    ("mask-value-7", _on(_img("b.png", "masks"), _mask_value), ["mask values"]),
    ("mask-other-size", _on(_img("b.png", "masks"), _mask_size), ["10x10"]),
    ("mask-colour", _on(_img("c.png", "masks"), _mask_colour), ["mask is colour"]),
    ("image-garbage", _on(_img(), _write(b"\x89PNG but no more")), ["cannot read image"]),
    ("image-empty", _on(_img(), _write(b"")), ["cannot read image"]),
    ("image-truncated", _on(_img("c.png"), broken.truncate, 0.5), ["cannot read image"]),
]


@pytest.mark.parametrize("case", FOLDER_CASES, ids=[c[0] for c in FOLDER_CASES])
def test_folder(case: Case, folder_src: Path, tmp_path: Path) -> None:
    _, mutate, names = case
    src = copy_source(folder_src, tmp_path)
    extra = mutate(src, tmp_path)
    run_case(datakit_app(), ["convert", "folder", src, "--out", tmp_path / "out" / "x.h5", "-j", "1",
                             "--size", "16"], tmp_path, names=[*names, *extra], absent=[SECRET])


# -- output paths and odd but valid names -------------------------------------------------------------
NON_UTF8 = os.fsdecode(b"caf\xe9-\xff")  # a Latin-1 name: bytes that are not UTF-8


def test_non_utf8_source_path_converts_and_is_recorded_escaped(folder_src: Path, tmp_path: Path) -> None:
    src = copy_source(folder_src, tmp_path, NON_UTF8)
    out = tmp_path / "out" / "x.h5"
    r = run_case(datakit_app(), ["convert", "folder", src, "--out", out, "-j", "1", "--size", "16"], tmp_path,
                 code=0, outputs=["out/x.h5"])
    assert "wrote" in r.output
    from datakit.store import Store, validate_store

    assert validate_store(out) == []
    with Store(out) as s:
        assert "\\xe9" in s.attrs["command"] and "\\xff" in s.attrs["command"]


def test_non_utf8_output_path(folder_src: Path, tmp_path: Path) -> None:
    src = copy_source(folder_src, tmp_path)
    name = os.fsdecode(b"st\xf6re.h5")
    run_case(datakit_app(), ["convert", "folder", src, "--out", tmp_path / "out" / name, "-j", "1", "--size",
                             "16"], tmp_path, code=0, outputs=[f"out/{name}"])


def test_non_utf8_source_refused_cleanly_when_broken(folder_src: Path, tmp_path: Path) -> None:
    src = copy_source(folder_src, tmp_path, NON_UTF8)
    broken.fifo(src / "images" / "a.png")
    run_case(datakit_app(), ["convert", "folder", src, "--out", tmp_path / "out" / "x.h5", "-j", "1"], tmp_path,
             names=["a.png", "FIFO"])


@pytest.mark.parametrize("where", ["exists", "missing-folder", "is-a-folder", "folder-is-a-file"])
def test_output_paths_refused_before_any_work(where: str, acdc_src: Path, tmp_path: Path) -> None:
    src = copy_source(acdc_src, tmp_path)
    out = tmp_path / "out" / "x.h5"
    if where == "exists":
        out.write_bytes(b"previous store")
    elif where == "missing-folder":
        out = tmp_path / "out" / "nope" / "x.h5"
    elif where == "is-a-folder":
        out.mkdir()
    else:
        (tmp_path / "out" / "f").write_text("a file")
        out = tmp_path / "out" / "f" / "x.h5"
    reason = {"exists": "already exists", "missing-folder": "does not exist", "is-a-folder": "directory",
              "folder-is-a-file": "f"}[where]
    # --out is declared dir_okay=False: a folder there is Click's usage error (exit 2), named
    run_case(datakit_app(), ["convert", "acdc", src, "--out", out, "-j", "1"], tmp_path, names=[reason],
             code=2 if where == "is-a-folder" else 1)


# -- auxiliary inputs: split files, class manifests, label files given by option --------------------------
def _aux(kind: str, ws: Path) -> Path:
    p = ws / "aux" / {"split": "split.json", "manifest": "classes.json", "labels": "labels.json"}[kind]
    p.parent.mkdir(exist_ok=True)
    return p


AUX_CASES = [
    ("split-file-fifo", "split", "fifo", ["split.json", "FIFO"]),
    ("split-file-nested-deep", "split", b"[" * 200_000 + b"]" * 200_000, ["split.json", "nested too deeply"]),
    ("split-file-not-json", "split", b"{train: [a]}", ["split.json", "not valid JSON"]),
    ("split-file-not-utf8", "split", b'{"train": ["\xff"]}', ["split.json", "not UTF-8"]),
    ("class-manifest-fifo", "manifest", "fifo", ["classes.json", "FIFO"]),
    ("class-manifest-nested-deep", "manifest", b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
     ["classes.json", "nested too deeply"]),
    ("labels-option-fifo", "labels", "fifo", ["labels.json", "FIFO"]),
]


@pytest.mark.parametrize("case", AUX_CASES, ids=[c[0] for c in AUX_CASES])
def test_auxiliary_inputs(case, unity_src: Path, folder_src: Path, tmp_path: Path) -> None:
    _, kind, content, names = case
    p = _aux(kind, tmp_path)
    if content == "fifo":
        os.mkfifo(p)
    else:
        p.write_bytes(content)
    out = tmp_path / "out" / "x.h5"
    if kind == "split":
        src = copy_source(folder_src, tmp_path)
        args = ["convert", "folder", src, "--out", out, "-j", "1", "--size", "16", "--split", f"file:{p}"]
    else:
        src = copy_source(unity_src, tmp_path)
        option = "--classes" if kind == "manifest" else "--labels"
        args = ["splines-to-masks", "unity", src, "--out", out, "-j", "1", "--size", "32", option, p]
    run_case(datakit_app(), args, tmp_path, names=names)


def test_trailing_gzip_data_is_never_inflated(acdc_src: Path, tmp_path: Path, monkeypatch) -> None:
    """The bound, not only the refusal: no more than the header's promise (+ 64 KB) is ever inflated."""
    import datakit.io.nifti as nifti
    from datakit.io import nifti_header

    inflated: list[int] = []
    real = nifti._zlib.decompressobj

    class Counting:
        def __init__(self, *a: object) -> None:
            self._d = real(*a)

        def decompress(self, data: bytes, max_length: int = 0) -> bytes:
            out = self._d.decompress(data, max_length)
            inflated.append(len(out))
            return out

        def __getattr__(self, name: str) -> object:
            return getattr(self._d, name)

    monkeypatch.setattr(nifti._zlib, "decompressobj", Counting)
    src = copy_source(acdc_src, tmp_path)
    image = _ed(src)
    promised = len(gzip.decompress(image.read_bytes()))
    broken.gzip_trailing_zeros(image, megabytes=64)
    run_case(datakit_app(), ["convert", "acdc", src, "--out", tmp_path / "out" / "x.h5", "-j", "1"], tmp_path,
             names=[image.name, "more than"])
    assert sum(inflated) <= promised + nifti_header.TRAILING_SLACK + 1, (sum(inflated), promised)


# -- --ratios with a zero part: that split is empty, present in the store with no samples --------------------
RATIO_CASES = [  # (--ratios, --split, patients per split of the three converted); a zero part is an empty split,
    ("1,0,0", "stratified", {"train": 3, "valid": 0, "test": 0}),  # every non-zero part keeps one patient at least
    ("0.8,0,0.2", "random", {"train": 2, "valid": 0, "test": 1}),
    ("1,0", "random", {"train": 3, "valid": 0}),
    ("0,1,0", "stratified", {"train": 0, "valid": 3, "test": 0}),
    ("0.9,0.05,0.05", "random", {"train": 1, "valid": 1, "test": 1}),
]


@pytest.mark.parametrize(("ratios", "split", "expected"), RATIO_CASES, ids=[c[0] for c in RATIO_CASES])
def test_ratios_zero_part_is_an_empty_split(ratios: str, split: str, expected: dict[str, int], acdc3: Path,
                                           tmp_path: Path) -> None:
    from datakit.store import Store, validate_store

    src = copy_source(acdc3, tmp_path)
    out = tmp_path / "out" / "x.h5"
    run_case(datakit_app(), ["convert", "acdc", src, "--out", out, "-j", "1", "--size", "32", "--spacing", "6",
                             "--ratios", ratios, "--split", split], tmp_path, code=0, outputs=["out/x.h5"],
             names=["wrote"])
    assert validate_store(out) == []
    with Store(out) as s:
        patients = s.meta["patient"]
        got = {name: len(set(patients[idx].tolist())) for name, idx in s.splits.items()}
        assert got == expected
        assert sum(len(idx) for idx in s.splits.values()) == len(s)  # every sample in exactly one split
        assert s.split_attrs["ratios"].tolist() == [float(r) for r in ratios.split(",")]
