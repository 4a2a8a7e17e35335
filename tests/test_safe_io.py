"""safe_io's single-file output (replace_file / write_file) and list reading: the guarantees every
command that writes one PNG or JSON, or reads a split list, relies on."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from datakit.errors import DatakitError
from datakit.safe_io import read_lines, replace_file, write_file


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_each_call_writes_through_its_own_temporary(tmp_path: Path) -> None:
    """Two writers of one output at once (two runs, or two calls of one run) never share a temporary."""
    out = tmp_path / "out.json"
    with replace_file(out) as a, replace_file(out) as b:
        names = _temporaries(tmp_path)
        assert len(names) == 2 and all(n.startswith(f".out.json.{os.getpid()}-") for n in names)
        a.write(b"first")
        b.write(b"second")
    assert out.read_bytes() == b"first" and _temporaries(tmp_path) == []  # a (closed last) is renamed last
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # an ordinary file, not mkstemp's 0600


def test_a_failure_leaves_no_temporary_and_the_old_output(tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    out.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="render failed"), replace_file(out) as f:
        f.write(b"half a PNG")
        raise RuntimeError("render failed")
    assert out.read_bytes() == b"previous" and _temporaries(tmp_path) == []
    with pytest.raises(KeyboardInterrupt), replace_file(out) as f:  # Ctrl-C too
        raise KeyboardInterrupt
    assert out.read_bytes() == b"previous" and _temporaries(tmp_path) == []


def test_a_write_error_is_one_line_naming_the_output(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    out.write_bytes(b"previous")
    with pytest.raises(DatakitError) as e, replace_file(out) as f:
        f.write(b"x")
        raise OSError(28, "No space left on device")
    assert str(e.value) == f"{out}: no space left on device"
    assert out.read_bytes() == b"previous" and _temporaries(tmp_path) == []
    with pytest.raises(DatakitError, match="cannot write") as e:
        write_file(tmp_path / "no-such-folder" / "x.json", "{}")
    assert "x.json" in str(e.value)


def test_without_overwrite_an_output_made_meanwhile_is_not_replaced(tmp_path: Path) -> None:
    """The check before the work is not enough: another run may finish first. Its file stays."""
    out = tmp_path / "stats.json"
    with pytest.raises(DatakitError, match="already exists") as e, replace_file(out, overwrite=False) as f:
        f.write(b"mine")
        out.write_bytes(b"the other run's")
    assert e.value.where == str(out)
    assert out.read_bytes() == b"the other run's" and _temporaries(tmp_path) == []
    write_file(out, "replaced", overwrite=True)
    assert out.read_text() == "replaced"
    write_file(tmp_path / "new.json", b"new", overwrite=False)
    assert (tmp_path / "new.json").read_bytes() == b"new" and _temporaries(tmp_path) == []


def test_temporaries_of_dead_runs_are_removed_live_ones_kept(tmp_path: Path) -> None:
    out = tmp_path / "p.png"
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "60"])
    try:
        stale, kept = tmp_path / f".p.png.{dead.pid}-0123abcd.tmp", tmp_path / f".p.png.{live.pid}-89abcdef.tmp"
        stale.write_bytes(b"killed mid-write")
        kept.write_bytes(b"a live run's")
        write_file(out, b"png")
        assert not stale.exists() and kept.read_bytes() == b"a live run's"
    finally:
        live.kill()
        live.wait()


def test_list_that_is_not_a_regular_file_is_named_as_such(tmp_path: Path) -> None:
    lst = tmp_path / "subGroup1_training.txt"
    lst.write_text("\ufeffpatient0001\n\n  patient0002 \n")
    assert read_lines(lst, "split list") == ["patient0001", "patient0002"]
    lst.unlink()
    os.mkfifo(lst)  # opening it would block: it must be refused from its stat alone
    with pytest.raises(DatakitError, match="is a FIFO, not a regular file") as e:
        read_lines(lst, "split list")
    assert e.value.where == str(lst)
    with pytest.raises(DatakitError, match="split list not found"):
        read_lines(tmp_path / "absent.txt", "split list")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
