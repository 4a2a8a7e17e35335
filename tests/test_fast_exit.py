"""The console scripts skip the interpreter's teardown: exit codes, output and files must survive it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py

from datakit.store import validate_store


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # piped output is buffered
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, env=env)


def test_conversion_through_the_console_entry_point(acdc_phantoms: Path, tmp_path: Path) -> None:
    out = tmp_path / "acdc.h5"
    p = _run("-m", "datakit", "convert", "acdc", str(acdc_phantoms), "--out", str(out), "--workers", "2")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"wrote {out}: ") and "4 patients" in p.stdout  # piped stdout was flushed
    assert validate_store(out) == []
    again = _run("-m", "datakit", "convert", "acdc", str(acdc_phantoms), "--out", str(out))
    assert again.returncode == 1 and "already exists; pass --overwrite" in again.stderr


def test_exit_codes_and_messages_pass_through(tmp_path: Path) -> None:
    p = _run("-m", "datakit", "info", str(tmp_path / "missing.h5"))
    assert p.returncode == 1 and "missing.h5" in p.stderr
    p = _run("-m", "datakit", "convert", "acdc", "--bogus")
    assert p.returncode == 2 and "--bogus" in p.stderr  # Click's usage error
    script = "from datakit.cli.fast_exit import run_then_exit\nrun_then_exit(lambda: exit('bad input'))"
    p = _run("-c", script)
    assert p.returncode == 1 and p.stderr.strip() == "bad input"


def test_open_hdf5_files_and_atexit_handlers_are_finished(tmp_path: Path) -> None:
    """A command that leaves a file open for writing, an atexit handler or a thread still running gets
    them finished, as with the interpreter's own exit."""
    out, marker, late = tmp_path / "left_open.h5", tmp_path / "atexit.txt", tmp_path / "thread.txt"
    script = textwrap.dedent(f"""
        import atexit, threading, time, h5py, numpy as np
        from datakit.cli.fast_exit import run_then_exit

        def slow_writer():
            time.sleep(0.5)
            open({str(late)!r}, "w").write("finished")

        still_open = []

        def app():
            f = h5py.File({str(out)!r}, "w")
            still_open.append(f)  # referenced at exit: not closed by garbage collection
            f.create_dataset("x", data=np.arange(1000))
            f.attrs["done"] = "yes"
            atexit.register(lambda: open({str(marker)!r}, "w").write("ran"))
            threading.Thread(target=slow_writer).start()  # non-daemon: the process waits for it
            print("leaving", end="")  # no newline: still in the buffer at exit

        run_then_exit(app)
    """)
    p = _run("-c", script)
    assert p.returncode == 0 and p.stdout == "leaving"
    with h5py.File(out, "r") as f:
        assert f["x"][:].tolist() == list(range(1000)) and f.attrs["done"] == "yes"
    assert marker.read_text() == "ran" and late.read_text() == "finished"
