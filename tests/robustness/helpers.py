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
import time
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


def train_app() -> Any:
    from train.cli import app

    return app


def process_state(pid: int) -> str:
    """The process's state letter from /proc (R, S, D, Z, ...), or "gone" once it is reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return "gone"


def dead_within(pids: list[int], seconds: float) -> dict[int, str]:
    """Poll /proc until every process has ended; the states of those still running after ``seconds``.

    A zombie (Z) has ended: it runs nothing and holds no memory or files, only its exit status, kept
    until whoever adopted it (here the container's PID 1, which collects orphans about every 2 s)
    reads it. ``os.kill(pid, 0)`` still succeeds on it, which made workers look alive ~1.7 s."""
    deadline = time.monotonic() + seconds
    while True:
        running = {pid: st for pid in pids if (st := process_state(pid)) not in ("gone", "Z", "X")}
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(0.005)
