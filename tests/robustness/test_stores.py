"""Corrupted and hostile stores fed to every consumer: info, stats, preview, scribble, merge, export nnunet,
validate, train run, train eval and train predict. Each refuses with the violation named, exit 1, no traceback and
nothing written; the store itself is never modified. Label values outside the classes are refused
by the commands that act on them. Outputs are never replaced without --overwrite.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.robustness.helpers import datakit_app, run_case, train_app

torch = pytest.importorskip("torch")

TRAIN_FAST = ["--width", "4", "--batch-size", "2", "--workers", "0", "--no-progress", "--max-steps", "1"]


# -- corruptions: (id, change to an h5py file opened r+, text each consumer must name) -----------------
def _attr(name: str, value: object) -> Callable[[h5py.File], None]:
    def change(f: h5py.File) -> None:
        f.attrs[name] = value
    return change


def _delete(name: str) -> Callable[[h5py.File], None]:
    def change(f: h5py.File) -> None:
        del f[name]
    return change


def _short_meta(f: h5py.File) -> None:
    d = f["meta/patient"]
    d.resize(d.shape[0] - 1, axis=0)


def _split_past_end(f: h5py.File) -> None:
    n = f["images"].shape[0]
    del f["splits/train"]
    f["splits"].create_dataset("train", data=np.array([0, n + 5], np.int64))


def _label_state_k(f: h5py.File) -> None:
    n = f["label_state"].shape[0]
    del f["label_state"]
    f.create_dataset("label_state", data=np.zeros((n, 2), np.int8))


def _float_masks(f: h5py.File) -> None:
    data = f["masks"][()].astype(np.float32)
    del f["masks"]
    f.create_dataset("masks", data=data, chunks=(1, *data.shape[1:]))


def _images_3d(f: h5py.File) -> None:
    data = f["images"][:, 0]
    del f["images"]
    f.create_dataset("images", data=data, chunks=(1, *data.shape[1:]))


def _split_float(f: h5py.File) -> None:
    data = f["splits/valid"][()].astype(np.float64)
    del f["splits/valid"]
    f["splits"].create_dataset("valid", data=data)


def _spacing_shape(f: h5py.File) -> None:
    n = f["images"].shape[0]
    del f["meta/spacing"]
    f["meta"].create_dataset("spacing", data=np.ones((n, 3), np.float32))


def _patients_short(f: h5py.File) -> None:
    g = f["patients"]
    name = next(k for k in g if k != "id")
    data = g[name][()][:-1]
    del g[name]
    g.create_dataset(name, data=data)


CORRUPTIONS: list[tuple[str, Callable[[h5py.File], None], list[str]]] = [
    ("split-float-indices", _split_float, ["splits/valid"]),
    ("meta-spacing-3-columns", _spacing_shape, ["meta/spacing"]),
    ("patients-column-short", _patients_short, ["patients/"]),
    ("classes-not-json", _attr("classes", "background, LV"), ["attrs/classes"]),
    ("classes-empty", _attr("classes", "[]"), ["attrs/classes"]),
    ("classes-numbers", _attr("classes", "[1, 2]"), ["attrs/classes"]),
    ("images-missing", _delete("images"), ["images", "missing"]),
    ("images-3d", _images_3d, ["images", "shape"]),
    ("meta-column-short", _short_meta, ["meta/patient"]),
    ("meta-group-missing", _delete("meta"), ["meta"]),
    ("split-index-past-end", _split_past_end, ["splits/train", "outside"]),
    ("schema-version-text", _attr("schema_version", "one"), ["schema_version"]),
    ("schema-version-newer", _attr("schema_version", 2), ["schema_version", "2"]),
    ("schema-missing", _delete_attr := (lambda f: f.attrs.__delitem__("schema")), ["schema"]),
    ("image-size-mismatch", _attr("image_size", np.array([64, 64], np.int64)), ["64"]),
    ("label-state-width", _label_state_k, ["label_state"]),
    ("masks-float", _float_masks, ["masks", "float32"]),
]


def _raw(data: bytes) -> Callable[[Path], None]:
    def write(p: Path) -> None:
        p.write_bytes(data)
    return write


def _fifo(p: Path) -> None:
    import os

    p.unlink()
    os.mkfifo(p)


FILE_CORRUPTIONS: list[tuple[str, Callable[[Path], None], list[str]]] = [
    ("not-hdf5", _raw(b"this is not an HDF5 file at all" * 10), ["HDF5"]),
    ("empty-file", _raw(b""), ["HDF5"]),
    ("fifo", _fifo, ["FIFO"]),
]


def _consumers(store: Path, ws: Path, ck: Path) -> dict[str, tuple[object, list[object]]]:
    out = ws / "out"
    return {
        "info": (datakit_app(), ["info", store]),
        "stats": (datakit_app(), ["stats", store]),
        "preview": (datakit_app(), ["preview", store, "--out", out / "p.png"]),
        "scribble": (datakit_app(), ["scribble", store, "--algo", "skeleton", "--out", out / "s.h5", "-j", "1"]),
        "merge": (datakit_app(), ["merge", store, "--out", out / "m.h5"]),
        "export": (datakit_app(), ["export", "nnunet", store, out, "--dataset-id", "7", "--name", "x"]),
        "validate": (datakit_app(), ["validate", store]),
        "train-run": (train_app(), ["run", "--store", store, "--out", out / "run", *TRAIN_FAST]),
        "train-eval": (train_app(), ["eval", "--checkpoint", ck, "--store", store, "--device", "cpu"]),
        "train-predict": (train_app(), ["predict", "--checkpoint", ck, "--store", store, "--out", out / "pred",
                                        "--device", "cpu"]),
    }


CONSUMERS = ["info", "stats", "preview", "scribble", "merge", "export", "validate", "train-run", "train-eval",
             "train-predict"]


def _workspace(good_store: Path, ws: Path) -> Path:
    (ws / "out").mkdir()
    store = ws / "in" / "store.h5"
    store.parent.mkdir()
    shutil.copyfile(good_store, store)
    return store


@pytest.mark.parametrize("consumer", CONSUMERS)
@pytest.mark.parametrize("corruption", CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_corrupted_store(corruption, consumer: str, good_store: Path, checkpoint: Path, tmp_path: Path) -> None:
    _, change, names = corruption
    store = _workspace(good_store, tmp_path)
    with h5py.File(store, "r+") as f:
        change(f)
    app, args = _consumers(store, tmp_path, checkpoint)[consumer]
    run_case(app, args, tmp_path, names=["store.h5", *names])


@pytest.mark.parametrize("consumer", ["info", "merge", "validate", "train-run", "train-eval"])
@pytest.mark.parametrize("corruption", FILE_CORRUPTIONS, ids=[c[0] for c in FILE_CORRUPTIONS])
def test_store_file_not_a_store(corruption, consumer: str, good_store: Path, checkpoint: Path,
                                tmp_path: Path) -> None:
    _, change, names = corruption
    store = _workspace(good_store, tmp_path)
    change(store)
    app, args = _consumers(store, tmp_path, checkpoint)[consumer]
    if consumer == "validate" and names == ["FIFO"]:
        names = ["not a regular file"]
    run_case(app, args, tmp_path, names=["store.h5", *names])


# -- label values outside the classes -------------------------------------------------------------------
def _mask_42(f: h5py.File) -> None:
    m = f["masks"][3]
    m[:2, :2] = 42
    f["masks"][3] = m


def _mask_all_9(f: h5py.File) -> None:
    f["masks"][...] = 9


def _scribble_7(f: h5py.File) -> None:
    s = f["scribbles"][0]
    s[0, 0] = 7
    f["scribbles"][0] = s


LABEL_CORRUPTIONS = [("mask-42-in-one-sample", _mask_42, ["masks[3]", "42"]),
                     ("masks-9-everywhere", _mask_all_9, ["masks[0", "9"]),
                     ("scribble-7", _scribble_7, ["scribbles[0]", "7"])]


LABEL_CASES = [(c, consumer) for c in LABEL_CORRUPTIONS
               for consumer in ("merge", "export", "validate", "train-run", "train-eval", "scribble")
               # eval reads only masks; scribble replaces the scribbles without reading them
               if not (c[0] == "scribble-7" and consumer in ("train-eval", "scribble"))]


@pytest.mark.parametrize(("corruption", "consumer"), LABEL_CASES, ids=[f"{c[0]}-{k}" for c, k in LABEL_CASES])
def test_label_values_out_of_range(corruption, consumer: str, good_store: Path, checkpoint: Path,
                                   tmp_path: Path) -> None:
    _, change, names = corruption
    store = _workspace(good_store, tmp_path)
    with h5py.File(store, "r+") as f:
        change(f)
        if consumer == "train-eval":  # eval scores the test split's masks: the bad value goes there
            i = int(f["splits/test"][0])
            m = f["masks"][i]
            m[0, 0] = 42
            f["masks"][i] = m
            names = ["masks[", "42"]
        if consumer == "train-run":  # train run checks the labels its streams read: the bad value goes in train
            field = "scribbles" if names[0].startswith("scribbles") else "masks"
            i = int(f["splits/train"][0])
            a = f[field][i]
            a[0, 0] = int(names[1])
            f[field][i] = a
            names = [f"{field}[", names[1]]
    app, args = _consumers(store, tmp_path, checkpoint)[consumer]
    if consumer == "train-run":  # one train patient: maag cannot split it; pce reads scribbles, full masks
        args = [*args, "--method", "pce" if names[0].startswith("scribbles") else "full"]
    if consumer == "export" and names[0].startswith("scribbles"):
        args = [*args, "--labels", "scribbles"]  # exporting masks never reads the scribbles
    run_case(app, args, tmp_path, names=["store.h5", *names])


# -- outputs are never replaced without --overwrite ------------------------------------------------------
def test_stats_json_not_replaced_without_overwrite(good_store: Path, tmp_path: Path) -> None:
    store = _workspace(good_store, tmp_path)
    js = tmp_path / "out" / "stats.json"
    js.write_text("previous")
    run_case(datakit_app(), ["stats", store, "--json", js], tmp_path, names=["stats.json", "--overwrite"])
    run_case(datakit_app(), ["stats", store, "--json", js, "--overwrite"], tmp_path, code=0,
             outputs=["out/stats.json"])
    assert json.loads(js.read_text())["store"]


def test_stats_plots_not_replaced_without_overwrite(good_store: Path, tmp_path: Path) -> None:
    store = _workspace(good_store, tmp_path)
    plots = tmp_path / "out" / "plots"
    plots.mkdir()
    (plots / "coverage.png").write_bytes(b"previous")
    run_case(datakit_app(), ["stats", store, "--plots", plots], tmp_path, names=["coverage.png", "--overwrite"])
    run_case(datakit_app(), ["stats", store, "--plots", plots, "--overwrite"], tmp_path, code=0,
             outputs=["out/plots"])
    assert (plots / "coverage.png").read_bytes() != b"previous"


@pytest.mark.parametrize("consumer", ["preview", "merge", "scribble"])
def test_existing_output_not_replaced(consumer: str, good_store: Path, checkpoint: Path, tmp_path: Path) -> None:
    store = _workspace(good_store, tmp_path)
    target = {"preview": "p.png", "merge": "m.h5", "scribble": "s.h5"}[consumer]
    (tmp_path / "out" / target).write_bytes(b"previous")
    app, args = _consumers(store, tmp_path, checkpoint)[consumer]
    run_case(app, args, tmp_path, names=[target, "--overwrite"])


def test_merge_refuses_a_newer_schema_instead_of_writing_it_as_v1(good_store: Path, checkpoint: Path,
                                                                  tmp_path: Path) -> None:
    store = _workspace(good_store, tmp_path)
    other = tmp_path / "in" / "other.h5"
    shutil.copyfile(good_store, other)
    with h5py.File(other, "r+") as f:
        f.attrs["schema_version"] = 3
    run_case(datakit_app(), ["merge", store, other, "--out", tmp_path / "out" / "m.h5"], tmp_path,
             names=["other.h5", "schema_version", "newer"])
