"""The robustness suite's harness: every case runs a command in a private workspace and asserts

- the exit code;
- the named path or key in the message;
- no traceback (no exception escaped the command's error boundary, no "Traceback" in the output);
- nothing written outside the declared outputs, and sources unchanged: every file of the
  workspace (source copy, an ``outside/`` folder, the output folder) is hashed before and after.

Inputs are generated in the exact formats of the real datasets (the phantom writers of
``datakit.synth``), tiny so the whole suite stays fast, then broken one way per case.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

RUNNER = CliRunner()
CASE_TIMEOUT_S = 60  # a hang (a FIFO read, a runaway decode) fails the case instead of the suite


def tree_state(root: Path) -> dict[str, str]:
    """Relative path -> content digest (regular files), link target, or kind; FIFOs are never opened."""
    out: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(folder) / name
            rel = p.relative_to(root).as_posix()
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = "link:" + os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = "dir"
            else:
                out[rel] = "special"
    return out


class CaseTimeout(BaseException):
    """Not an OSError (TimeoutError is one): no ``except OSError`` in the code under test can swallow it."""


def _alarm(signum: int, frame: Any) -> None:
    raise CaseTimeout(f"the command ran past {CASE_TIMEOUT_S} s (a hang?)")


@dataclass
class Outcome:
    code: int
    output: str
    changed: set[str]


def run_case(app: Any, args: Sequence[object], ws: Path, *, code: int = 1, names: Sequence[object] = (),
             outputs: Sequence[str] = (), absent: Sequence[str] = ()) -> Outcome:
    """Run ``app args`` in workspace ``ws`` and assert the harness's guarantees (module docstring).

    ``names``: text each expected in the output (paths, keys, reasons); ``outputs``: paths relative to
    ``ws`` that may be created or changed (everything else must be byte-identical afterwards);
    ``absent``: text that must not appear (e.g. bytes of a file outside the source)."""
    before = tree_state(ws)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_TIMEOUT_S)
    try:
        r = RUNNER.invoke(app, [str(a) if not isinstance(a, bytes) else os.fsdecode(a) for a in args])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        import traceback

        tb = "".join(traceback.format_exception(type(r.exception), r.exception, r.exception.__traceback__))
        pytest.fail(f"exception escaped the command (a traceback for the user):\n{tb}\noutput:\n{r.output}")
    out = r.output
    assert "Traceback" not in out, out
    assert r.exit_code == code, f"exit {r.exit_code}, expected {code}:\n{out}"
    for n in names:
        assert str(n) in out, f"{n!r} not named in:\n{out}"
    for n in absent:
        assert str(n) not in out, f"{n!r} leaked into:\n{out}"
    after = tree_state(ws)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    stray = sorted(k for k in changed if not any(k == o or k.startswith(o.rstrip("/") + "/") for o in outputs))
    assert not stray, f"files created, changed or removed outside the outputs {list(outputs)}: {stray}\n{out}"
    return Outcome(r.exit_code, out, changed)


def datakit_app() -> Any:
    from datakit.cli import app

    return app


def copy_source(original: Path, ws: Path, name: str = "src") -> Path:
    dst = ws / name
    shutil.copytree(original, dst, symlinks=True)
    (ws / "out").mkdir(exist_ok=True)
    outside = ws / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.raw").write_bytes(b"OUTSIDE-SECRET-" * 4096)
    return dst


# -- generated sources (session-scoped, read-only; each case copies) -----------------------------------
@pytest.fixture(scope="session")
def acdc_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ACDC patient (ED and ES NIfTI volumes, _gt, Valvano scribbles, Info.cfg)."""
    from datakit.synth.acdc import write_acdc_phantoms

    root = tmp_path_factory.mktemp("rb_acdc") / "ACDC"
    write_acdc_phantoms(root, patients=1, seed=5, cine=False)
    return root


@pytest.fixture(scope="session")
def acdc3(acdc_src: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three ACDC patients (the phantom patient under three numbers): enough items for a worker pool."""
    root = tmp_path_factory.mktemp("rb_acdc_x3") / "ACDC"
    first = next(acdc_src.rglob("patient001"))
    for n in (1, 2, 3):
        d = root / "training" / f"patient{n:03d}"
        d.mkdir(parents=True)
        for f in first.iterdir():
            shutil.copyfile(f, d / f.name.replace("patient001", f"patient{n:03d}"))
    return root


@pytest.fixture(scope="session")
def camus_mhd_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One CAMUS patient of the MHD/RAW release (coarse pixels), with listSubGroups/."""
    from datakit.synth.camus import write_camus_phantoms

    root = tmp_path_factory.mktemp("rb_camus_mhd") / "CAMUS"
    write_camus_phantoms(root, patients=1, release="mhd", seed=5, row_spacing=1.5, testing=0)
    return root


@pytest.fixture(scope="session")
def camus_nifti_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One CAMUS patient of the NIfTI release (coarse pixels), with database_split/."""
    from datakit.synth.camus import write_camus_phantoms

    root = tmp_path_factory.mktemp("rb_camus_nii") / "CAMUS"
    write_camus_phantoms(root, patients=1, release="nifti", seed=5, row_spacing=1.5)
    return root


@pytest.fixture(scope="session")
def unity_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two Unity videos of one labelled frame each (png-cache/ + labels-all.json)."""
    from datakit.synth.unity import write_unity_phantoms

    root = tmp_path_factory.mktemp("rb_unity") / "unity"
    write_unity_phantoms(root, videos=2, frames=1, seed=5, shape=(60, 80))
    return root


@pytest.fixture(scope="session")
def folder_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An images/ + masks/ folder of three 8-bit PNG pairs (Kvasir-like layout)."""
    from tests.folder_data import write_pairs

    root = tmp_path_factory.mktemp("rb_folder") / "kvasir"
    write_pairs(root, ["a", "b", "c"], size=(24, 32), mask_scale=1)
    return root


@pytest.fixture(scope="session")
def good_store(acdc_src: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid store (the ACDC phantom at 32 x 32, 6 mm pixels), with train/valid/test splits."""
    from datakit.pipeline import ConvertOptions, convert
    from datakit.sources.acdc import AcdcSource
    from datakit.synth.acdc import write_acdc_phantoms

    root = tmp_path_factory.mktemp("rb_acdc3") / "ACDC"
    write_acdc_phantoms(root, patients=3, seed=6, cine=False)
    out = tmp_path_factory.mktemp("rb_store") / "good.h5"
    convert(AcdcSource(root, spacing=6.0, size=32), ConvertOptions(out=out, workers=1, progress=False,
                                                                     ratios=(0.34, 0.33, 0.33)),
            log=lambda m: None)
    return out


def train_app():
    from train.cli import app

    return app


@pytest.fixture(scope="session")
def checkpoint(good_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A well-formed checkpoint for the good store's classes (untrained, narrow): eval reaches the store."""
    from datakit.store import Store
    from train import checkpoint as ckpt
    from train.model import AttentionUNet

    with Store(good_store) as s:
        classes = s.classes
    model = AttentionUNet(in_channels=1, classes=len(classes), width=4)
    path = tmp_path_factory.mktemp("rb_ckpt") / "good.pt"
    ckpt.save(path, {"step": 0, "method": "pce", "classes": classes, "model_config": model.config,
                     "model": model.state_dict(), "config": {"store": str(good_store)}})
    return path
