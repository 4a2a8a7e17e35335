"""One writer per output: every command that writes a store or an output folder holds an exclusive
lock on it for its whole run (a second writer is refused naming the holder's PID), a store that
appears at ``--out`` meanwhile is never replaced without ``--overwrite``, and ``merge`` / ``scribble``
compare their inputs and output by file identity (a hard link or a symbolic link is the same store)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.robustness.helpers import copy_source, datakit_app, run_case

LINUX = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="flock and fork: Linux")


def _lock_file(target: Path) -> Path:
    return target.parent / f".{target.name}.lock"


# -- the lock itself ---------------------------------------------------------------------------------------
@LINUX
def test_lock_refuses_a_second_holder_and_leaves_nothing(tmp_path: Path) -> None:
    from datakit.errors import DatakitError
    from datakit.locks import exclusive_lock

    target = tmp_path / "x.h5"
    with exclusive_lock(target, "store") as lock:
        assert lock == _lock_file(target)
        assert lock.read_text().strip() == str(os.getpid())
        with pytest.raises(DatakitError) as e, exclusive_lock(target, "store"):
            pass
        assert str(e.value) == (f"{target}: this store is being written by another process (PID {os.getpid()}); "
                                "wait for it or choose another --out")
        assert lock.exists()  # the refused attempt leaves the holder's lock alone
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError), exclusive_lock(target, "store"):  # released on an error too
        raise RuntimeError("failed")
    assert list(tmp_path.iterdir()) == []


@LINUX
def test_lock_retries_when_the_lock_file_is_replaced_while_taking_it(tmp_path: Path, monkeypatch) -> None:
    """The holder unlinks its lock file on release: a process that opened the old file just before must not
    believe it holds the lock (two holders); it sees that the path no longer names what it locked and retries."""
    import fcntl

    from datakit.locks import exclusive_lock

    target = tmp_path / "x.h5"
    calls = []
    flock = fcntl.flock

    def released_meanwhile(fd: int, op: int) -> None:
        flock(fd, op)
        calls.append(os.fstat(fd).st_ino)
        if len(calls) == 1:  # another holder released (unlinked) it and a third made a new one
            _lock_file(target).unlink()
            _lock_file(target).write_text("99999\n")

    monkeypatch.setattr(fcntl, "flock", released_meanwhile)
    with exclusive_lock(target, "store") as lock:
        assert len(calls) == 2 and calls[0] != calls[1]
        assert os.stat(lock).st_ino == calls[1]
        assert lock.read_text().strip() == str(os.getpid())
    assert list(tmp_path.iterdir()) == []


HOLD_AND_FORK = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from datakit.locks import exclusive_lock

    with exclusive_lock(Path(sys.argv[1]), "store"):
        if os.fork() == 0:  # a worker that outlives its parent (no PR_SET_PDEATHSIG here)
            Path(sys.argv[2]).touch()  # running past the fork handlers: its copy of the lock is closed
            time.sleep(60)
            os._exit(0)
        print("locked", flush=True)
        time.sleep(60)
""")


@LINUX
def test_a_forked_child_does_not_keep_the_lock_of_a_killed_parent(tmp_path: Path) -> None:
    """After kill -9 the lock file stays (nobody removes it) but the lock goes with the process, even while a
    forked child (a data-loader worker) still runs: the next writer takes it, and removes the stale file."""
    from datakit.locks import exclusive_lock

    target = tmp_path / "x.h5"
    script = tmp_path / "hold.py"
    script.write_text(HOLD_AND_FORK)
    child_ready = tmp_path / "child-ready"
    p = subprocess.Popen([sys.executable, str(script), str(target), str(child_ready)], stdout=subprocess.PIPE,
                         text=True)
    children: list[int] = []
    try:
        assert p.stdout.readline().strip() == "locked"
        deadline = time.monotonic() + 30
        while not child_ready.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        children += [int(c) for c in Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()]
        assert children
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        assert _lock_file(target).read_text().strip() == str(p.pid)  # stale, left by the killed holder
        with exclusive_lock(target, "store"):
            assert _lock_file(target).read_text().strip() == str(os.getpid())
        assert not _lock_file(target).exists()
    finally:
        p.kill()
        p.wait()
        for c in children:
            try:
                os.kill(c, signal.SIGKILL)
            except ProcessLookupError:
                pass


# -- every writing command takes it --------------------------------------------------------------------------
def _writer(command: str, ws: Path, good_store: Path, acdc3: Path, unity_src: Path) -> tuple[list[object], Path]:
    """The command line of one writing command, and the output it locks."""
    out = ws / "out"
    if command == "convert":
        return (["convert", "acdc", copy_source(acdc3, ws), "--out", out / "x.h5", "-j", "1", "--size", "32",
                 "--spacing", "6"], out / "x.h5")
    if command == "splines-to-masks":
        return (["splines-to-masks", "unity", copy_source(unity_src, ws), "--out", out / "x.h5", "-j", "1",
                 "--size", "32"], out / "x.h5")
    if command == "export":
        return ["export", "nnunet", good_store, out, "--dataset-id", "7", "--name", "x"], out / "Dataset007_x"
    return ({"merge": ["merge", good_store, "--out", out / "x.h5"],
             "scribble": ["scribble", good_store, "--algo", "skeleton", "--out", out / "x.h5", "-j", "1"]}[command],
            out / "x.h5")


@LINUX
@pytest.mark.parametrize("command", ["convert", "splines-to-masks", "merge", "scribble", "export"])
def test_every_writer_refuses_an_output_being_written(command: str, good_store: Path, acdc3: Path, unity_src: Path,
                                                      tmp_path: Path) -> None:
    """Held here by this process (another open of the lock file: flock refuses it as it would another process)."""
    from datakit.locks import exclusive_lock

    (tmp_path / "out").mkdir()
    args, target = _writer(command, tmp_path, good_store, acdc3, unity_src)
    with exclusive_lock(target, "run directory"):
        run_case(datakit_app(), args, tmp_path, names=[f"{target}: ", f"another process (PID {os.getpid()})"])
    assert not _lock_file(target).exists()
    run_case(datakit_app(), args, tmp_path, code=0, outputs=[f"out/{target.name}"])  # free again: written
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no lock file, no temporary


# -- two real conversions into one new --out ---------------------------------------------------------------
BLOCKED = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from datakit.sources.acdc import AcdcSource

    ready, go = Path(sys.argv.pop(1)), Path(sys.argv.pop(1))
    original = AcdcSource.read

    def blocked(self, item):
        if item.patient == "patient002":  # mid-conversion, the lock held: wait for the test's go
            ready.write_text(str(os.getpid()))
            deadline = time.monotonic() + 120
            while not go.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        return original(self, item)

    AcdcSource.read = blocked
    sys.argv = ["datakit", *sys.argv[1:]]
    from datakit.cli import main

    main()
""")


@LINUX
def test_two_conversions_into_one_new_out(acdc3: Path, tmp_path: Path) -> None:
    from datakit.store import validate_store

    out = tmp_path / "out" / "x.h5"
    out.parent.mkdir()
    script, ready, go = tmp_path / "blocked.py", tmp_path / "ready", tmp_path / "go"
    script.write_text(BLOCKED)
    args = ["convert", "acdc", str(acdc3), "--out", str(out), "-j", "1", "--size", "32", "--spacing", "6"]
    first = subprocess.Popen([sys.executable, str(script), str(ready), str(go), *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first conversion never started"
            time.sleep(0.02)
        second = subprocess.run([sys.executable, "-m", "datakit", *args], capture_output=True, text=True, timeout=120)
        assert second.returncode == 1, second.stderr
        assert f"error: {out}: this store is being written by another process (PID {first.pid})" in second.stderr
        assert "Traceback" not in second.stderr
        go.touch()
        stdout, stderr = first.communicate(timeout=120)
    finally:
        go.touch()
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, stderr
    assert f"wrote {out}: " in stdout
    assert validate_store(out) == []
    assert [p.name for p in out.parent.iterdir()] == ["x.h5"]  # no lock file, no temporary


# -- an output placed at --out while the command runs --------------------------------------------------------
def test_a_store_placed_at_out_during_a_conversion_is_not_replaced(acdc3: Path, tmp_path: Path, monkeypatch) -> None:
    from datakit.sources.acdc import AcdcSource

    src = copy_source(acdc3, tmp_path)
    out = tmp_path / "out" / "x.h5"
    original = AcdcSource.read

    def read(self, item):
        if item.patient == "patient002":  # after --out was checked, before the store is put in place
            out.write_bytes(b"placed meanwhile by someone else")
        return original(self, item)

    monkeypatch.setattr(AcdcSource, "read", read)
    run_case(datakit_app(), ["convert", "acdc", src, "--out", out, "-j", "1", "--size", "32", "--spacing", "6"],
             tmp_path, names=[f"{out}: already exists", "--overwrite"], outputs=["out/x.h5"])
    assert out.read_bytes() == b"placed meanwhile by someone else"
    assert [p.name for p in out.parent.iterdir()] == ["x.h5"]


@pytest.mark.parametrize("command", ["merge", "scribble"])
def test_a_store_placed_at_out_during_merge_or_scribble_is_not_replaced(command: str, good_store: Path,
                                                                          tmp_path: Path, monkeypatch) -> None:
    from datakit.store.writer import StoreWriter

    out = tmp_path / "out" / "x.h5"
    out.parent.mkdir()
    append = StoreWriter.append

    def placed_meanwhile(self, samples):
        out.write_bytes(b"placed meanwhile by someone else")
        return append(self, samples)

    monkeypatch.setattr(StoreWriter, "append", placed_meanwhile)
    args = {"merge": ["merge", good_store, "--out", out],
            "scribble": ["scribble", good_store, "--algo", "skeleton", "--out", out, "-j", "1"]}[command]
    run_case(datakit_app(), args, tmp_path, names=[f"{out}: already exists", "--overwrite"], outputs=["out/x.h5"])
    assert out.read_bytes() == b"placed meanwhile by someone else"
    assert [p.name for p in out.parent.iterdir()] == ["x.h5"]


def test_a_folder_placed_at_the_export_target_is_not_removed(good_store: Path, tmp_path: Path, monkeypatch) -> None:
    from datakit.export import nnunet

    out = tmp_path / "out"
    out.mkdir()
    target = out / "Dataset007_x"
    write = nnunet._write

    def placed_meanwhile(*a, **k):
        target.mkdir()
        (target / "mine.txt").write_text("someone else's work")
        return write(*a, **k)

    monkeypatch.setattr(nnunet, "_write", placed_meanwhile)
    run_case(datakit_app(), ["export", "nnunet", good_store, out, "--dataset-id", "7", "--name", "x"], tmp_path,
             names=[f"{target}: already exists", "--overwrite"], outputs=["out/Dataset007_x"])
    assert (target / "mine.txt").read_text() == "someone else's work"
    assert sorted(p.name for p in target.iterdir()) == ["mine.txt"]
    assert [p.name for p in out.iterdir()] == ["Dataset007_x"]


# -- the same store under two names ------------------------------------------------------------------------
def _alias(store: Path, where: Path, kind: str) -> Path:
    alias = where / f"{kind}.h5"
    if kind == "hardlink":
        os.link(store, alias)
    else:
        alias.symlink_to(store)
    return alias


@pytest.mark.parametrize("kind", ["hardlink", "symlink"])
def test_merge_refuses_one_store_under_two_names(kind: str, good_store: Path, tmp_path: Path) -> None:
    a = tmp_path / "in" / "a.h5"
    a.parent.mkdir()
    shutil.copyfile(good_store, a)
    b = _alias(a, a.parent, kind)
    (tmp_path / "out").mkdir()
    run_case(datakit_app(), ["merge", a, b, "--out", tmp_path / "out" / "m.h5"], tmp_path,
             names=[f"{a} and {b} are the same store"])


@pytest.mark.parametrize("command", ["merge", "scribble"])
def test_out_that_is_a_hard_link_of_the_input_is_refused(command: str, good_store: Path, tmp_path: Path) -> None:
    a = tmp_path / "in" / "a.h5"
    a.parent.mkdir()
    shutil.copyfile(good_store, a)
    out = _alias(a, a.parent, "hardlink")
    args = {"merge": ["merge", a, "--out", out, "--overwrite"],
            "scribble": ["scribble", a, "--algo", "skeleton", "--out", out, "-j", "1", "--overwrite"]}[command]
    run_case(datakit_app(), args, tmp_path, names=[f"{out}: ", "input"])
    assert os.stat(out).st_ino == os.stat(a).st_ino  # still the same file: nothing replaced
