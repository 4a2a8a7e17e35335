"""The source registry: every source's commands are built from it, and what it declares is true."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from datakit.cli import app
from datakit.cli.convert import convert_command
from datakit.sources.registry import SCRIBBLE_MODES, SOURCES

SHARED_OPTIONS = ["--out", "--scribbles", "--scribble-thickness", "--scribble-coverage", "--scribble-seed",
                  "--split", "--ratios", "--seed", "--workers", "--on-error", "--image-dtype",
                  "--image-compression", "--overwrite"]


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_declared_capabilities_match_the_source_class(name: str) -> None:
    spec = SOURCES[name]
    assert spec.source_class().__name__ in spec.source  # "module:Class" names a class that imports
    assert set(spec.scribble_modes) <= set(SCRIBBLE_MODES) and "none" in spec.scribble_modes
    assert spec.scribbles_default in spec.scribble_modes


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_source_has_every_shared_option_once(name: str) -> None:
    import typer.main

    spec = SOURCES[name]
    group = typer.main.get_command(app).commands[spec.group]
    opts = [o for p in group.commands[name].params for o in p.opts]
    for opt in SHARED_OPTIONS:
        assert opts.count(opt) == 1, (name, opt)
    res = CliRunner().invoke(app, [spec.group, name, "--help"])
    assert res.exit_code == 0 and spec.summary[:20] in res.output
    if spec.synth is not None:
        opts = [o for p in typer.main.get_command(app).commands["synth"].commands[name].params for o in p.opts]
        assert opts.count("--seed") == 1 and opts.count("--overwrite") == 1


def test_the_parameters_end_with_the_shared_ones_in_one_order() -> None:
    import inspect

    orders = {n: [p for p in inspect.signature(convert_command(s)).parameters][-11:] for n, s in SOURCES.items()}
    assert len({tuple(o) for o in orders.values()}) == 1, orders


@pytest.mark.parametrize("name", [n for n, s in SOURCES.items() if "folder" not in s.scribble_modes])
def test_a_source_without_scribble_files_refuses_a_folder(name: str, tmp_path) -> None:
    spec = SOURCES[name]
    res = CliRunner().invoke(app, [spec.group, name, str(tmp_path), "--out", str(tmp_path / "x.h5"),
                                   "--scribbles", str(tmp_path)])
    assert res.exit_code == 1 and f"{name} has no scribble files" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "x.h5").exists()


def test_help_does_not_import_the_sources() -> None:
    code = ("import sys; from datakit.cli import app; "
            "bad = [m for m in ('numpy', 'h5py', 'torch', 'datakit.sources.acdc') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_image_storage_options_reach_every_source(tmp_path) -> None:
    """--image-compression and --image-dtype are shared: a folder store written with gzip holds the
    same images; one written in float16 holds them rounded to half precision, and reads as float32."""
    import h5py
    import numpy as np

    from datakit.store import Store, validate_store
    from tests.folder_data import write_pairs

    write_pairs(tmp_path / "src", ["a", "b", "c"])
    outs = {}
    for dtype, comp in (("float32", "none"), ("float32", "gzip"), ("float16", "none"), ("float16", "gzip")):
        outs[dtype, comp] = tmp_path / f"{dtype}-{comp}.h5"
        res = CliRunner().invoke(app, ["convert", "folder", str(tmp_path / "src"), "--out", str(outs[dtype, comp]),
                                       "--binarize", "127", "--image-compression", comp, "--image-dtype", dtype,
                                       "-j", "1"])
        assert res.exit_code == 0, res.output
        assert validate_store(outs[dtype, comp]) == []
    with h5py.File(outs["float32", "none"]) as a, h5py.File(outs["float32", "gzip"]) as b:
        assert a["images"].compression is None and b["images"].compression == "gzip"
        np.testing.assert_array_equal(a["images"][:], b["images"][:])
        full = a["images"][:]
    for comp in ("none", "gzip"):
        with h5py.File(outs["float16", comp]) as h:
            assert h["images"].dtype == np.float16 and h["images"].compression == (None if comp == "none" else "gzip")
            assert "--image-dtype float16" in h.attrs["command"]  # the dtype is the record, and so is the command
            np.testing.assert_array_equal(h["images"][:], full.astype(np.float16))
        with Store(outs["float16", comp]) as s:
            got = s.sample(0)["image"]
            assert got.dtype == np.float32 and np.array_equal(got, full[0].astype(np.float16).astype(np.float32))
    info = CliRunner().invoke(app, ["info", str(outs["float16", "gzip"])])
    assert info.exit_code == 0 and "1 x 256 x 256 float16 gzip, spacing" in info.output, info.output
    info = CliRunner().invoke(app, ["info", str(outs["float32", "none"])])
    assert " float32, spacing" in info.output, info.output
    half, whole = (outs[d, "none"].stat().st_size for d in ("float16", "float32"))
    assert half < 0.75 * whole, (half, whole)
