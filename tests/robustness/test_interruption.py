"""Interruption and a full disk: SIGTERM is handled like Ctrl-C (message, temporary removed, exit 143),
conversion workers die with their parent even on ``kill -9`` (within 0.5 s), a later run removes a
dead run's temporary (by PID) but never a live one's, and ENOSPC anywhere is "error: PATH: no space
left on device", exit 1, temporary removed, the previous output intact."""

from __future__ import annotations

import errno
import io
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.robustness.helpers import datakit_app, dead_within, process_state, run_case, train_app, tree_state

torch = pytest.importorskip("torch")


NO_SPACE = "no space left on device"


def _no_space(*a: object, **k: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


class _FullDisk(io.FileIO):
    """A file on a full disk: every write fails with ENOSPC."""

    def write(self, b: object) -> int:
        _no_space()
        return 0


def _convert_args(src: Path, out: Path, *extra: str) -> list[object]:
    return ["convert", "acdc", src, "--out", out, "-j", "1", "--size", "32", "--spacing", "6", *extra]


# -- SIGTERM / Ctrl-C, in process ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["sigterm", "ctrl-c"])
def test_convert_interrupted_removes_its_temporary(kind: str, acdc3: Path, tmp_path: Path, monkeypatch) -> None:
    from datakit.cli.common import Terminated
    from datakit.sources.acdc import AcdcSource

    src = tmp_path / "src"
    shutil.copytree(acdc3, src)
    (tmp_path / "out").mkdir()
    calls = []
    original = AcdcSource.read

    def read(self, item):
        calls.append(item)
        if len(calls) == 2:  # mid-conversion: one patient written, the temporary exists
            assert any(p.name.endswith(".tmp") for p in (tmp_path / "out").iterdir())
            raise Terminated() if kind == "sigterm" else KeyboardInterrupt()
        return original(self, item)

    monkeypatch.setattr(AcdcSource, "read", read)
    run_case(datakit_app(), _convert_args(src, tmp_path / "out" / "x.h5"), tmp_path,
             code=143 if kind == "sigterm" else 130,
             names=["terminated" if kind == "sigterm" else "interrupted", "nothing was written"])


@pytest.mark.parametrize("command", ["merge", "scribble", "preview", "export"])
def test_store_writers_terminated(command: str, good_store: Path, tmp_path: Path, monkeypatch) -> None:
    from datakit.cli.common import Terminated

    def terminated(*a: object, **k: object) -> None:
        raise Terminated()

    monkeypatch.setattr("datakit.store.writer.StoreWriter.append", terminated)
    monkeypatch.setattr("matplotlib.figure.Figure.savefig", terminated)
    monkeypatch.setattr("datakit.export.nnunet._write", terminated)
    out = tmp_path / "out"
    out.mkdir()
    args = {"merge": ["merge", good_store, "--out", out / "m.h5"],
            "scribble": ["scribble", good_store, "--algo", "skeleton", "--out", out / "s.h5", "-j", "1"],
            "preview": ["preview", good_store, "--out", out / "p.png"],
            "export": ["export", "nnunet", good_store, out, "--dataset-id", "7", "--name", "x"]}[command]
    run_case(datakit_app(), args, tmp_path, code=143, names=["terminated"])


def test_train_run_terminated(good_store: Path, tmp_path: Path, monkeypatch) -> None:
    from datakit.cli.common import Terminated

    def terminated(*a: object, **k: object) -> None:
        raise Terminated()

    monkeypatch.setattr("train.loop.train", terminated)
    run_case(train_app(), ["run", "--store", good_store, "--out", tmp_path / "run", "--method", "pce",
                           "--max-steps", "1"], tmp_path, code=143, names=["interrupted", "--resume"],
             outputs=["run"])


# -- SIGTERM and kill -9 of a real process with worker processes ----------------------------------------
SLOW = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from datakit.sources.acdc import AcdcSource

    piddir = Path(sys.argv.pop(1))
    original = AcdcSource.read
    AcdcSource.releases_gil = False  # worker processes, as with scribble synthesis

    def slow(self, item):
        if item.patient != "patient001":  # the first is written: the temporary then exists
            (piddir / str(os.getpid())).write_text(item.patient)
            time.sleep(120)
        return original(self, item)

    AcdcSource.read = slow
    sys.argv = ["datakit", *sys.argv[1:]]
    from datakit.cli import main

    main()
""")


def _start_slow_conversion(src: Path, out: Path, piddir: Path) -> tuple[subprocess.Popen, list[int]]:
    piddir.mkdir()
    script = out.parent.parent / "slow.py"
    script.write_text(SLOW)
    p = subprocess.Popen([sys.executable, str(script), str(piddir), "convert", "acdc", str(src), "--out", str(out),
                          "-j", "2", "--size", "32", "--spacing", "6"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pids = [int(f.name) for f in piddir.iterdir()]
        tmp = [f for f in out.parent.iterdir() if f.name.endswith(".tmp")]
        if len(pids) >= 2 and tmp:
            return p, pids
        if p.poll() is not None:
            pytest.fail(f"conversion ended early: {p.returncode}\n{p.stderr.read()}")
        time.sleep(0.05)
    p.kill()
    pytest.fail("the workers never started")


def _gone(pids: list[int], within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                os.kill(pid, 0)
                alive.append(pid)
            except ProcessLookupError:
                pass
        if not alive:
            return True
        time.sleep(0.05)
    return False


LINUX = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork workers and PR_SET_PDEATHSIG: Linux")


@LINUX
def test_sigterm_during_convert_real_process(acdc3: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "x.h5"
    out.parent.mkdir()
    p, workers = _start_slow_conversion(acdc3, out, tmp_path / "pids")
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143, err
    assert "terminated" in err and "Traceback" not in err
    assert list(out.parent.iterdir()) == []  # no store, no temporary
    assert _gone(workers), "worker processes outlived their terminated parent"


@LINUX
def test_kill_9_workers_die_and_the_next_run_removes_the_stale_temporary(acdc3: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "x.h5"
    out.parent.mkdir()
    p, workers = _start_slow_conversion(acdc3, out, tmp_path / "pids")
    assert all(process_state(w) in "RSD" for w in workers)  # mid-item (sleeping in read)
    p.kill()
    t0 = time.monotonic()
    running = dead_within(workers, 0.5)  # PR_SET_PDEATHSIG: SIGKILL as the parent dies (~10 ms measured)
    assert not running, f"worker processes still running {time.monotonic() - t0:.2f} s after kill -9: {running}"
    p.communicate(timeout=30)
    stale = [f.name for f in out.parent.iterdir() if f.name.endswith(".tmp")]
    assert stale and str(p.pid) in stale[0]  # kill -9 cannot be cleaned up by the dead process itself
    lock = out.parent / ".x.h5.lock"  # left too, holding the dead PID; the lock itself died with the process
    assert lock.read_text().strip() == str(p.pid)
    live = subprocess.Popen(["sleep", "60"])
    try:
        kept = out.parent / f".x.h5.{live.pid}-0badcafe.tmp"
        kept.write_bytes(b"a live run's temporary")
        r = run_case(datakit_app(), _convert_args(acdc3, out), tmp_path, code=0,
                     outputs=["out/x.h5", f"out/{stale[0]}", f"out/{lock.name}"], names=["wrote"])
        assert f"out/{stale[0]}" in r.changed and not (out.parent / stale[0]).exists()
        assert not lock.exists()  # taken over (the holder is dead) and removed on release
        assert kept.read_bytes() == b"a live run's temporary"
    finally:
        live.kill()
        live.wait()


# -- a full disk -----------------------------------------------------------------------------------------
def test_convert_disk_full_keeps_the_previous_store(acdc_src: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("datakit.store.writer.StoreWriter.append", _no_space)
    src = tmp_path / "src"
    shutil.copytree(acdc_src, src)
    out = tmp_path / "out" / "x.h5"
    out.parent.mkdir()
    out.write_bytes(b"the previous store")
    run_case(datakit_app(), _convert_args(src, out, "--overwrite"), tmp_path, names=[f"{out}: {NO_SPACE}"])


@pytest.mark.parametrize("command", ["merge", "scribble", "preview", "export", "stats-json", "stats-plots"])
def test_consumers_disk_full(command: str, good_store: Path, tmp_path: Path, monkeypatch) -> None:
    from pathlib import Path as P

    from datakit import safe_io

    monkeypatch.setattr("datakit.store.writer.StoreWriter.append", _no_space)
    monkeypatch.setattr("matplotlib.figure.Figure.savefig", _no_space)
    monkeypatch.setattr("datakit.export.nnunet._write", _no_space)
    temporary = safe_io._exclusive_temporary  # single-file outputs are written through this temporary

    def full_disk_for_the_json(path: P, made: list[P]) -> io.FileIO:
        f = temporary(path, made)
        if path.name != "s.json":
            return f
        f.close()
        return _FullDisk(made[-1], "w")

    monkeypatch.setattr(safe_io, "_exclusive_temporary", full_disk_for_the_json)
    out = tmp_path / "out"
    out.mkdir()
    previous = {"merge": "m.h5", "scribble": "s.h5", "preview": "p.png", "stats-json": "s.json"}
    if command in previous:
        (out / previous[command]).write_bytes(b"previous output")
    args, named = {
        "merge": (["merge", good_store, "--out", out / "m.h5", "--overwrite"], out / "m.h5"),
        "scribble": (["scribble", good_store, "--algo", "skeleton", "--out", out / "s.h5", "-j", "1", "--overwrite"],
                     out / "s.h5"),
        "preview": (["preview", good_store, "--out", out / "p.png", "--overwrite"], out / "p.png"),
        "export": (["export", "nnunet", good_store, out, "--dataset-id", "7", "--name", "x"], out / "Dataset007_x"),
        "stats-json": (["stats", good_store, "--json", out / "s.json", "--overwrite"], out / "s.json"),
        "stats-plots": (["stats", good_store, "--plots", out / "plots"], out / "plots" / "coverage.png"),
    }[command]
    allowed = ["out/plots"] if command == "stats-plots" else []  # the folder is made before the figures
    run_case(datakit_app(), args, tmp_path, names=[f"{named}: {NO_SPACE}"], outputs=allowed)


def test_train_run_disk_full(good_store: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("train.checkpoint.torch.save", _no_space)
    run = tmp_path / "run"
    r = run_case(train_app(), ["run", "--store", good_store, "--out", run, "--method", "pce", "--max-steps", "1",
                               "--width", "4", "--batch-size", "2", "--workers", "0", "--no-progress"], tmp_path,
                 names=[NO_SPACE, "run"], outputs=["run"])
    assert not any(p.name.endswith(".tmp") for p in run.rglob("*")), r.changed


def _mount_tmpfs(where: Path) -> bool:
    where.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)], capture_output=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def test_convert_onto_a_really_full_filesystem(acdc_src: Path, tmp_path: Path) -> None:
    """A real ENOSPC from HDF5 (not a monkeypatch), through the console script: a 256 KB tmpfs, where
    mounting one is allowed. (A subprocess: after HDF5 fails to flush, it cannot close that file, and
    only the CLI's exit, which skips the interpreter's teardown, is sure not to touch it again.)"""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk):
        pytest.skip("cannot mount a small tmpfs here (needs root); the monkeypatched cases cover the code path")
    try:
        before = tree_state(acdc_src)
        for size in ("32", "64"):
            out = disk / "x.h5"
            p = subprocess.run([sys.executable, "-m", "datakit", *map(str, _convert_args(acdc_src, out)[:-4]),
                                "--size", size, "--spacing", "3"], capture_output=True, text=True, timeout=120)
            assert p.returncode == 1, p.stderr
            assert f"error: {out}: {NO_SPACE}" in p.stderr and "Traceback" not in p.stderr, p.stderr
            assert list(disk.iterdir()) == []
        assert tree_state(acdc_src) == before
    finally:
        if subprocess.run(["umount", str(disk)], capture_output=True, timeout=10).returncode:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=10)


def test_train_run_onto_a_really_full_filesystem(good_store: Path, tmp_path: Path) -> None:
    """torch's own writer fails on ENOSPC with an opaque RuntimeError: checkpoints are written as plain bytes."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk):
        pytest.skip("cannot mount a small tmpfs here (needs root); the monkeypatched case covers the code path")
    try:
        p = subprocess.run([sys.executable, "-m", "train", "run", "--store", str(good_store), "--out",
                            str(disk / "run"), "--method", "pce", "--max-steps", "2", "--width", "8",
                            "--batch-size", "2", "--workers", "0", "--no-progress"], capture_output=True, text=True,
                           timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert p.returncode == 1, p.stderr
        assert f"{NO_SPACE}" in p.stderr and ".pt: " in p.stderr and "Traceback" not in p.stderr, p.stderr
        assert not [f for f in disk.rglob("*") if f.name.endswith(".tmp")]
    finally:
        if subprocess.run(["umount", str(disk)], capture_output=True, timeout=10).returncode:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=10)


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


@pytest.mark.parametrize("command", ["merge", "scribble", "export"])
def test_stale_temporaries_of_dead_runs_removed_live_ones_kept(command: str, good_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    target = {"merge": "m.h5", "scribble": "s.h5", "export": "Dataset007_x"}[command]
    dead, live = _dead_pid(), subprocess.Popen(["sleep", "60"])
    try:
        stale, kept = out / f".{target}.{dead}-0123abcd.tmp", out / f".{target}.{live.pid}-89abcdef.tmp"
        for p in (stale, kept):
            if command == "export":
                p.mkdir()
                (p / "dataset.json").write_text("{}")
            else:
                p.write_bytes(b"half a store")
        args = {"merge": ["merge", good_store, "--out", out / "m.h5"],
                "scribble": ["scribble", good_store, "--algo", "skeleton", "--out", out / "s.h5", "-j", "1"],
                "export": ["export", "nnunet", good_store, out, "--dataset-id", "7", "--name", "x"]}[command]
        r = run_case(datakit_app(), args, tmp_path, code=0, outputs=[f"out/{target}", f"out/{stale.name}"])
        assert not stale.exists() and f"out/{stale.name}" in r.changed
        assert kept.exists()
    finally:
        live.kill()
        live.wait()


def test_other_os_errors_are_one_line_too(good_store: Path, tmp_path: Path, monkeypatch) -> None:
    """Not only ENOSPC: an I/O error writing, or a permission refused, is named, never a traceback."""
    from pathlib import Path as P

    def eio(*a: object, **k: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", eio)
    (tmp_path / "out").mkdir()
    run_case(datakit_app(), ["preview", good_store, "--out", tmp_path / "out" / "p.png"], tmp_path,
             names=["p.png", "Input/output error"])
    mkdir = P.mkdir

    def refused(self: P, *a: object, **k: object) -> None:
        if self.name == "plots":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return mkdir(self, *a, **k)

    monkeypatch.setattr(P, "mkdir", refused)
    run_case(datakit_app(), ["stats", good_store, "--plots", tmp_path / "out" / "plots"], tmp_path,
             names=["plots: cannot write (Permission denied)"])
