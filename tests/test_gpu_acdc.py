"""What the GPU reproduction needs, proven on CPU: the packed (float16) transport store, the one-command
script run end to end with the imports the device lacks blocked, and half-precision weights that
``train eval`` loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from datakit.store import Store, validate_store  # noqa: E402
from datakit.store.pack import pack_store, round_mantissa  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ABSENT_ON_DEVICE = ("nibabel", "SimpleITK", "isal")  # the device's python has none of these (device KINDS.md)


def test_round_mantissa_keeps_bf16_precision():
    x = np.linspace(-1, 3.5, 10001, dtype=np.float32)
    h = round_mantissa(x, 7)
    assert h.dtype == np.float16
    rel = np.abs(h.astype(np.float32) - x) / np.maximum(np.abs(x), 2 ** -14)
    assert rel.max() <= 2 ** -8 + 2 ** -11  # 7 stored bits: half a unit in the last place, plus fp16 rounding
    assert len(np.unique(h)) < len(np.unique(x.astype(np.float16)))  # fewer distinct values: it compresses


def test_packed_store_is_a_valid_smaller_store(small_store: Path, tmp_path: Path):
    s = Store(small_store)
    zero = s.splits["test"]
    dst = tmp_path / "packed.h5"
    r = pack_store(small_store, dst, mantissa_bits=7, zero_images=zero, why="test")
    assert validate_store(dst) == []
    assert r["dst_mib"] < r["src_mib"] and 0 < r["largest_change"] < 0.05
    with h5py.File(small_store) as a, h5py.File(dst) as b:
        assert b["images"].dtype == np.float16 and b["images"].compression == "gzip"
        keep = np.setdiff1d(np.arange(len(s)), zero)
        assert np.abs(b["images"][keep.tolist()].astype(np.float32) - a["images"][keep.tolist()]).max() < 0.05
        assert not b["images"][zero.tolist()].any()
        for name in ("masks", "scribbles", "label_state"):
            assert np.array_equal(a[name][()], b[name][()])
        assert sorted(b["splits"]) == sorted(a["splits"]) and sorted(b["meta"]) == sorted(a["meta"])
        assert "images float16 with 7 mantissa bits" in json.loads(b.attrs["notes"])[-1]
    assert Store(dst).sample(int(keep[0]))["image"].dtype == np.float32  # readers cast


def test_pack_refuses_to_replace_and_leaves_nothing_on_failure(small_store: Path, tmp_path: Path):
    from datakit.errors import DatakitError

    dst = tmp_path / "packed.h5"
    dst.write_bytes(b"keep me")
    with pytest.raises(DatakitError, match="already exists"):
        pack_store(small_store, dst)
    with pytest.raises(DatakitError, match="mantissa bits"):
        pack_store(small_store, tmp_path / "other.h5", mantissa_bits=0)
    with pytest.raises(OSError):
        pack_store(tmp_path / "missing.h5", tmp_path / "third.h5")
    assert dst.read_bytes() == b"keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["packed.h5"]


def test_the_gpu_script_runs_end_to_end_without_what_the_device_lacks(small_store: Path, tmp_path: Path):
    """benchmarks/gpu_acdc.py run on CPU: train, eval best + last, table, JSON, half weights; with
    nibabel, SimpleITK and isal made unimportable in every process it starts."""
    packed = tmp_path / "packed.h5"
    pack_store(small_store, packed, mantissa_bits=7)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import importlib.abc, sys\n"
        f"BLOCK = {set(ABSENT_ON_DEVICE)!r}\n"
        "class _Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in BLOCK:\n"
        "            raise ImportError(f'{name} is absent on the device')\n"
        "sys.meta_path.insert(0, _Block())\n")
    out = tmp_path / "out"
    env = {"PYTHONPATH": f"{site}:{REPO}", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, str(REPO / "benchmarks" / "gpu_acdc.py"), "run", "--store", str(packed), "--sha256", "",
           "--out", str(out), "--work", str(tmp_path / "work"), "--device", "cpu", "--max-steps", "3",
           "--batch", "2", "--width", "8", "--eval-every", "1", "--log-every", "1", "--sequential",
           "--limit-min", "5", "--reserve-min", "1"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "| maag |" in p.stdout and "| full |" in p.stdout and "MFU" in p.stdout
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # train plot of the three runs
    res = json.loads((out / "results.json").read_text())
    for m in ("maag", "pce", "full"):
        r = res["results"][m]
        assert r["exit"] == 0 and r["iterations"] == 3 and r["flop_per_iteration"] > 0
        assert r["best"]["dice"]["mean"] is not None and r["last"]["step"] == 3
        weights = torch.load(out / f"{m}.pt", weights_only=True)
        assert weights["weights_only"] and all(v.dtype in (torch.float16, torch.int64)
                                               for v in weights["model"].values())
    flops = {m: res["results"][m]["flop_per_iteration"] for m in ("maag", "pce", "full")}
    assert flops["maag"] > 1.5 * flops["pce"]  # two UNet passes and the discriminator
    # the half-precision weights load in train eval
    from typer.testing import CliRunner

    from train.cli import app

    r = CliRunner().invoke(app, ["eval", "--checkpoint", str(out / "maag.pt"), "--store", str(small_store),
                                 "--split", "valid"])
    assert r.exit_code == 0, r.output
    assert "valid:" in r.output


@pytest.mark.parametrize("compile_env,want", [(None, False), ("0", False), ("1", True)])
def test_gpu_script_takes_compile_from_the_environment(tmp_path: Path, compile_env: str | None, want: bool):
    """gpu_acdc.sh passes --compile to gpu_acdc.py run only with COMPILE=1 (a python3 that prints its
    arguments stands in for the device's); another value is refused."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "python3").write_text('#!/bin/sh\necho "python3 $*"\n')
    (bin_ / "python3").chmod(0o755)
    env = {"PATH": f"{bin_}:/usr/bin:/bin", "OUT": str(tmp_path / "out")}
    if compile_env is not None:
        env["COMPILE"] = compile_env
    p = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_acdc.sh"), "--methods", "maag"], capture_output=True,
                       text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    run = [line for line in p.stdout.splitlines() if "gpu_acdc.py run" in line]
    assert len(run) == 1 and run[0].endswith("--methods maag") and ("--compile" in run[0].split()) == want, p.stdout
    p = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_acdc.sh")], capture_output=True, text=True,
                       env={**env, "COMPILE": "yes"}, timeout=60)
    assert p.returncode == 2 and "COMPILE must be 0 or 1" in p.stderr


def _script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_acdc", REPO / "benchmarks" / "gpu_acdc.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_pack_says_when_what_travels_is_over_the_device_limit(tmp_path: Path):
    """The device call sends the working tree (tracked and untracked-not-ignored files) and what is carried:
    counted as such, and over the limit the committed weights are named as what to set aside."""
    mod = _script()
    repo = tmp_path / "repo"
    (repo / "results" / "acdc_cpu_proxy").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".gitignore").write_text("ignored/\n")
    (repo / "results" / "acdc_cpu_proxy" / "m.pt").write_bytes(b"w" * 2**20)  # untracked, not ignored: travels
    (repo / "ignored").mkdir()
    (repo / "ignored" / "big").write_bytes(b"x" * 2**22)  # ignored: stays
    carry = repo / ".device"
    carry.mkdir()
    (carry / "store.h5").write_bytes(b"s" * 2**21)
    assert mod.travel_check(repo, carry, limit_mib=3.5) is None  # 1 + 2 MiB (+ .gitignore)
    msg = mod.travel_check(repo, carry, limit_mib=2.5)
    assert msg is not None and "3.0 MiB, over the device call's 2.5 MiB by 0.5" in msg
    assert "set the CPU-proxy weights aside for the call (1.0 MiB" in msg


def test_mfu_is_against_the_measured_peak_of_the_gpu_found():
    mod = _script()
    assert mod.peak_flops("NVIDIA H100 80GB HBM3") == 798e12
    assert mod.peak_flops("NVIDIA H200") == 788e12
    assert mod.peak_flops("cpu") is None  # no MFU rather than one against the wrong peak
