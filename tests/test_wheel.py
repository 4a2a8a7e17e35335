"""The package as a user gets it: the built wheel installed into a fresh virtual environment outside
the checkout, then phantom ACDC, CAMUS and Unity data converted and a few training steps run from a
folder that is not the repository.

Fast and offline: the wheel is built without build isolation (setuptools from the project's venv),
the fresh venv has no pip and takes its dependencies (numpy, h5py, torch, ...) from the project's
site-packages through a ``.pth`` path line. Such a line only extends ``sys.path``: the ``.pth`` files
there (among them the editable install's finder, which would import the checkout) are not run, so
``datakit``, ``train`` and the manifests can only come from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO

MANIFESTS = sorted(p.name for p in (REPO / "manifests").glob("*.json"))
SKIP_DIRS = {".git", ".venv", "build", "dist", "demo", "out", "__pycache__", ".pytest_cache", ".ruff_cache",
             ".hypothesis"}


def _sh(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: int = 300) -> str:
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} -> exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the source tree (the build leaves nothing in the checkout)."""
    src = tmp_path_factory.mktemp("src") / "datakit"
    shutil.copytree(REPO, src, ignore=lambda d, names: [n for n in names if n in SKIP_DIRS or n.endswith(
        (".egg-info", ".h5"))])
    dist = src.parent / "dist"
    _sh(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
        "-w", dist, src, cwd=src.parent)
    (whl,) = dist.glob("datakit-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv, outside the checkout, holding the installed wheel."""
    env_dir = tmp_path_factory.mktemp("venv") / "env"
    _sh(sys.executable, "-m", "venv", "--without-pip", env_dir, cwd=env_dir.parent)
    py = env_dir / "bin" / "python"
    purelib = Path(_sh(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                       cwd=env_dir.parent).strip())
    (purelib / "_project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _sh(sys.executable, "-m", "pip", "--python", py, "install", "--quiet", "--no-deps", "--no-index", wheel,
        cwd=env_dir.parent)
    return env_dir


def _user_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return {**env, "OMP_NUM_THREADS": "1"}


def test_wheel_ships_the_manifests(wheel: Path):
    names = zipfile.ZipFile(wheel).namelist()
    assert MANIFESTS and all(f"datakit/manifests/{m}" in names for m in MANIFESTS), names
    assert not any(n.startswith(("manifests/", "tests/")) for n in names)  # no top-level package leaks


def test_installed_wheel_converts_and_trains_outside_the_checkout(venv: Path, tmp_path: Path):
    bin_, env = venv / "bin", _user_env()
    where = _sh(bin_ / "python", "-c", "import datakit, datakit.resources as r, train; "
                "print(datakit.__file__); print(train.__file__); print(r.manifest('acdc.json'))", cwd=tmp_path, env=env)
    for line in where.split():
        assert Path(line).is_relative_to(venv) and not Path(line).is_relative_to(REPO), where

    def dk(*args: str) -> str:
        return _sh(bin_ / "datakit", *args, cwd=tmp_path, env=env)

    dk("synth", "acdc", "acdc", "--patients", "4", "--no-cine")
    assert "wrote acdc.h5: " in dk("convert", "acdc", "acdc", "--out", "acdc.h5", "--size", "64", "--spacing", "3",
                                   "-j", "1", "--split", "random", "--ratios", "0.5,0.25,0.25")
    dk("synth", "camus", "camus", "--patients", "3")
    assert "wrote camus.h5: " in dk("convert", "camus", "camus", "--out", "camus.h5", "--size", "64", "-j", "1",
                                    "--split", "random")
    dk("synth", "unity", "unity", "--videos", "3", "--frames", "1")
    assert "wrote unity.h5: " in dk("splines-to-masks", "unity", "unity", "--out", "unity.h5", "--size", "64",
                                    "-j", "1", "--split", "random")
    for store in ("acdc.h5", "camus.h5", "unity.h5"):
        assert "valid" in dk("validate", store)
    out = _sh(bin_ / "train", "run", "--store", "acdc.h5", "--out", "run", "--method", "maag", "--max-steps", "2",
              "--width", "8", "--batch-size", "2", "--workers", "0", "--no-progress", "--eval-every", "2",
              cwd=tmp_path, env=env)
    assert "done: 2 steps" in out, out
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    # provenance: versions, but no commit (not run from a checkout)
    run_prov = json.loads((tmp_path / "run" / "provenance.json").read_text())
    store_prov = json.loads(_sh(bin_ / "python", "-c", "import h5py; print(h5py.File('acdc.h5')"
                                ".attrs['provenance'])", cwd=tmp_path, env=env))
    for p in (run_prov, store_prov):
        assert p["datakit"] and p["numpy"] and p["h5py"] and p["torch"] and p["git_commit"] is None, p
    # the README's Dataset example, as a user pastes it, against the installed package, on a store like the
    # README's: ACDC converted with MAAG's split file (patient004 of the phantoms is a scribble patient)
    readme = (REPO / "README.md").read_text().split("\n## Python", 1)[1]
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "readme").mkdir()
    dk("convert", "acdc", "acdc", "--out", "readme/acdc.h5", "--size", "64", "--spacing", "3", "-j", "1",
       "--split", f"file:{REPO / 'manifests' / 'acdc_maag_split.json'}")
    printed = _sh(bin_ / "python", "-c", code, cwd=tmp_path / "readme", env=env)
    assert printed.startswith("torch.Size([") and "['patient004'" in printed, printed


def test_a_stale_editable_install_still_finds_the_checkouts_manifests(monkeypatch: pytest.MonkeyPatch):
    """A venv installed before manifests/ became datakit.manifests (no `make install` since) has no
    mapping for it: the checkout's own folder is read, not a traceback."""
    import datakit.resources as resources

    def missing(name: str):
        raise ModuleNotFoundError(f"No module named {name!r}")

    monkeypatch.setattr(resources, "files", missing)
    assert resources.manifest("acdc.json") == REPO / "manifests" / "acdc.json"
    assert resources.read_manifest("camus.json")["classes"]
