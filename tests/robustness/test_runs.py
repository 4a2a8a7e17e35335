"""Training runs that never lose work or misreport it: what ``train run`` does when its weights diverge,
when it is killed or the disk fills while it rewrites or appends its files, when ``--overwrite`` fails,
when ``--resume`` is given something it cannot honour, when validation is empty, and when two writers
meet in one run directory. Each case was reproduced on the code before the fix."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.robustness.helpers import dead_within, run_case, train_app, tree_state

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ["--width", "4", "--batch-size", "2", "--workers", "0", "--no-progress", "--log-every", "1", "--device", "cpu"]


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _train(store: Path, run: Path, *extra: object, method: str = "pce", steps: int = 2, code: int = 0,
           ws: Path | None = None, names=(), outputs=("run",)):
    args = ["run", "--store", store, "--out", run, "--method", method, "--max-steps", steps, *TINY, *extra]
    return run_case(train_app(), args, ws or run.parent, code=code, names=names, outputs=list(outputs))


def _resume(run: Path, *extra: object, code: int = 0, names=(), outputs=("run",)):
    return run_case(train_app(), ["run", "--out", run, "--resume", *extra], run.parent, code=code, names=names,
                    outputs=list(outputs))


# -- 1. weights that diverge are never "the last good checkpoint" ---------------------------------------
def test_weights_that_become_non_finite_are_never_checkpointed(good_store: Path, tmp_path: Path, monkeypatch):
    """The update of step 2 makes a weight inf while step 2's loss (computed before it) was finite: the
    save of step 2 is refused, last.pt stays step 1's, and the message names that step."""
    from train.methods.context import StepContext

    real = StepContext.step_g

    def diverging(self, total, parts):
        out = real(self, total, parts)
        if self.step == 1:
            with torch.no_grad():
                next(self.nets.raw_model.parameters()).fill_(float("inf"))
        return out

    monkeypatch.setattr(StepContext, "step_g", diverging)
    run = tmp_path / "run"
    out = _train(good_store, run, "--ckpt-every", 1, "--valid-split", "", steps=4, code=1,
                 names=["is not finite (NaN or inf) at step 2", "last good checkpoint", "(step 1) is kept"])
    assert "model weight encoder.0.convs.0.0.weight" in out.output
    ck = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    from train.checkpoint import non_finite

    assert ck["step"] == 1 and non_finite(ck) is None


def test_eval_refuses_a_checkpoint_with_non_finite_weights(checkpoint: Path, good_store: Path, tmp_path: Path):
    ck = torch.load(checkpoint, weights_only=True)
    next(iter(ck["model"].values())).fill_(float("nan"))
    bad = tmp_path / "nan.pt"
    torch.save(ck, bad)
    run_case(train_app(), ["eval", "--checkpoint", bad, "--store", good_store, "--device", "cpu"], tmp_path,
             names=["nan.pt", "is not finite", "diverged"])


# -- 2. resume start-up rewrites whole files ----------------------------------------------------------------
@pytest.mark.parametrize("target", ["config.toml", "metrics.jsonl"])
def test_a_kill_while_resume_rewrites_a_file_leaves_the_previous_one(target: str, good_store: Path, tmp_path: Path,
                                                                     monkeypatch):
    """Resume rewrites config.toml and drops metrics rows after the checkpoint; interrupted at the
    moment a rewrite is put in place, the file is the previous one, whole, and the next resume works."""
    run = tmp_path / "run"
    _train(good_store, run, "--valid-split", "", steps=2)
    step2 = (run / "checkpoints" / "last.pt").read_bytes()
    _resume(run, "--max-steps", 4)  # metrics now run to step 4; put step 2's checkpoint back
    (run / "checkpoints" / "last.pt").write_bytes(step2)
    before = tree_state(run)
    from datakit import safe_io

    real = safe_io.publish

    def killed(tmp: Path, path: Path, overwrite: bool) -> None:
        if path.name == target:
            raise KeyboardInterrupt  # as a kill lands: the rename never happens
        real(tmp, path, overwrite)

    monkeypatch.setattr(safe_io, "publish", killed)
    _resume(run, "--max-steps", 5, "--lr", 0.5, code=130, names=["interrupted"], outputs=("run/config.toml",))
    after = tree_state(run)
    assert after[target] == before[target]  # the whole previous file
    assert not [p for p in run.rglob("*.tmp")]
    monkeypatch.setattr(safe_io, "publish", real)
    _resume(run, "--max-steps", 5)
    assert [r["step"] for r in _rows(run) if "loss/total" in r] == [1, 2, 3, 4, 5]


# -- 3. a full disk while appending metrics ------------------------------------------------------------------
class _TornFile:
    """The metrics file on a disk that fills up: the third row is written half, then ENOSPC."""

    def __init__(self, f):
        self.f, self.n = f, 0

    def write(self, text: str) -> int:
        self.n += 1
        if self.n == 3:
            self.f.write(text[: len(text) // 2])
            self.f.flush()
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.f.write(text)

    def __getattr__(self, name: str):
        return getattr(self.f, name)


def test_a_full_disk_while_logging_names_the_metrics_and_resume_drops_the_torn_line(good_store: Path,
                                                                                   tmp_path: Path, monkeypatch):
    from train import loop

    real_init = loop._Metrics.__init__

    def torn(self, path):
        real_init(self, path)
        self.f = _TornFile(self.f)

    monkeypatch.setattr(loop._Metrics, "__init__", torn)
    run = tmp_path / "run"
    run_case(train_app(), ["run", "--store", good_store, "--out", run, "--method", "pce", "--max-steps", 4, *TINY,
                           "--ckpt-every", 1, "--valid-split", ""], tmp_path, code=1,
             names=[f"{run / 'metrics.jsonl'}: no space left on device"], absent=["provenance.json:"],
             outputs=["run"])
    lines = (run / "metrics.jsonl").read_text().splitlines()
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[-1])  # torn
    monkeypatch.setattr(loop._Metrics, "__init__", real_init)
    out = _resume(run, "--max-steps", 4, names=["dropped its last line"])
    assert "metrics.jsonl" in out.output
    assert [r["step"] for r in _rows(run) if "loss/total" in r] == [1, 2, 3, 4]


# -- 4. --overwrite keeps the earlier run until the new one has a checkpoint ---------------------------------
@pytest.fixture
def earlier(good_store: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    _train(good_store, run, "--valid-split", "", steps=2)
    (run / "notes.txt").write_text("mine")
    return run


def test_overwrite_refused_up_front_removes_nothing(earlier: Path, good_store: Path, tmp_path: Path):
    before = tree_state(earlier)
    _train(good_store, earlier, "--overwrite", "--device", "cuda", code=1, names=["CUDA is not available"],
           outputs=())
    assert tree_state(earlier) == before


def test_overwrite_that_fails_before_its_first_checkpoint_keeps_the_earlier_run(earlier: Path, good_store: Path,
                                                                                monkeypatch):
    import train.methods.context as context  # StepContext.scribble_ce: every method's scribble CE

    before = tree_state(earlier)
    real = context.partial_ce
    monkeypatch.setattr(context, "partial_ce", lambda *a, **k: real(*a, **k) * float("nan"))
    _train(good_store, earlier, "--overwrite", "--valid-split", "", steps=3, code=1,
           names=["loss/total is nan at step 1", "earlier run in RUN_DIR is kept"], outputs=())
    assert tree_state(earlier) == before  # no staging folder left either


def test_overwrite_interrupted_before_its_first_checkpoint_keeps_the_earlier_run(earlier: Path, good_store: Path,
                                                                                 monkeypatch):
    from train.methods.context import StepContext

    def interrupted(self, total, parts):
        raise KeyboardInterrupt

    before = tree_state(earlier)
    monkeypatch.setattr(StepContext, "step_g", interrupted)
    _train(good_store, earlier, "--overwrite", code=130, names=["interrupted"], outputs=())
    assert tree_state(earlier) == before


def test_overwrite_swaps_the_new_run_in_at_its_first_checkpoint(earlier: Path, good_store: Path):
    old_ck = (earlier / "checkpoints" / "last.pt").read_bytes()
    _train(good_store, earlier, "--overwrite", "--valid-split", "", "--seed", 7, steps=1)
    names = sorted(p.name for p in earlier.iterdir())
    assert names == ["checkpoints", "config.toml", "metrics.jsonl", "notes.txt", "provenance.json"]
    assert (earlier / "notes.txt").read_text() == "mine"
    assert (earlier / "checkpoints" / "last.pt").read_bytes() != old_ck
    assert [r["step"] for r in _rows(earlier)] == [1] and "seed = 7" in (earlier / "config.toml").read_text()


# -- 5 / 6. --resume continues the same run or nothing ---------------------------------------------------
@pytest.fixture
def pce_run(good_store: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    _train(good_store, run, "--valid-split", "", "--lr-schedule", "constant", "--lr", 1e-3, steps=2)
    return run


def _other_store(acdc3: Path, tmp_path: Path) -> Path:
    from datakit.pipeline import ConvertOptions, convert
    from datakit.sources.acdc import AcdcSource

    out = tmp_path / "other.h5"  # the same size and classes; other patients
    convert(AcdcSource(acdc3, spacing=6.0, size=32), ConvertOptions(out=out, workers=1, progress=False),
            log=lambda m: None)
    return out


@pytest.mark.parametrize("case", ["method", "width", "store", "copied-from-another-run", "weights-only"])
def test_resume_refuses_what_it_cannot_honour_and_changes_nothing(case: str, pce_run: Path, good_store: Path,
                                                                  acdc3: Path, tmp_path: Path):
    extra: list[object] = []
    names: list[str] = []
    if case == "method":
        extra, names = ["--method", "full"], ["method is 'pce', now 'full'"]
    elif case == "width":
        extra, names = ["--width", 8], ["width is 4, now 8"]
    elif case == "store":
        extra, names = ["--store", _other_store(acdc3, tmp_path)], ["store content is '"]
    elif case == "copied-from-another-run":
        other = tmp_path / "full"
        _train(good_store, other, "--valid-split", "", method="full", steps=1, outputs=("full",))
        shutil.copyfile(other / "checkpoints" / "last.pt", pce_run / "checkpoints" / "last.pt")
        names = ["method is 'full', now 'pce'"]
    else:
        from train.checkpoint import save, weights_only

        path = pce_run / "checkpoints" / "last.pt"
        save(path, {k: v for k, v in weights_only(torch.load(path, weights_only=True)).items()
                    if k not in ("format", "version")})
        names = ["is a weights-only checkpoint", "evaluated, not resumed"]
    before = tree_state(pce_run)
    _resume(pce_run, "--max-steps", 4, *extra, code=1, names=["last.pt", *names], outputs=())
    assert tree_state(pce_run) == before  # provenance.json, config.toml and metrics.jsonl untouched


def test_resume_applies_a_changed_lr_and_records_every_changed_option(pce_run: Path):
    _resume(pce_run, "--max-steps", 4, "--lr", 1e-4, names=["resumed at step 2 with", "lr 0.001 -> 0.0001"])
    rows = _rows(pce_run)
    assert {"step": 2, "changed": {"max_steps": [2, 4], "lr": [0.001, 0.0001]}} in rows
    lrs = {r["step"]: r["lr"] for r in rows if "lr" in r}
    assert lrs[1] == lrs[2] == pytest.approx(1e-3) and lrs[3] == lrs[4] == pytest.approx(1e-4)
    assert "lr = 0.0001" in (pce_run / "config.toml").read_text()
    ck = torch.load(pce_run / "checkpoints" / "last.pt", weights_only=True)
    assert ck["opt_g"]["param_groups"][0]["lr"] == pytest.approx(1e-4) and ck["config"]["lr"] == 1e-4


def test_resume_of_a_run_older_than_an_option_keeps_what_its_code_did(good_store: Path, tmp_path: Path,
                                                                     monkeypatch):
    """A run written before --scribble-weights (no such key in config.toml nor in last.pt's config) took
    MAAG's batch-weighted partial CE; resumed, it keeps it, not today's default for its method (em: uniform)."""
    from train.methods.context import StepContext

    run = tmp_path / "run"
    _train(good_store, run, "--valid-split", "", method="em", steps=2)
    cfg = run / "config.toml"
    cfg.write_text("".join(line for line in cfg.read_text().splitlines(keepends=True)
                           if not line.startswith("scribble_weights")))
    path = run / "checkpoints" / "last.pt"
    ck = torch.load(path, weights_only=True)
    assert ck["config"].pop("scribble_weights") == "auto"
    torch.save(ck, path)
    seen = []
    real = StepContext.__init__

    def spy(self, *a, **k):
        real(self, *a, **k)
        seen.append(self.scribble_weighted)

    monkeypatch.setattr(StepContext, "__init__", spy)
    _resume(run, "--max-steps", 3)
    assert seen == [True]  # batch weights, as before the option existed
    assert [r["changed"] for r in _rows(run) if "changed" in r] == [{"max_steps": [2, 3]}]  # the loss did not
    _resume(run, "--max-steps", 4, "--scribble-weights", "none")  # an explicit change takes effect, recorded
    assert seen == [True, False]
    assert {"step": 3, "changed": {"max_steps": [3, 4], "scribble_weights": ["batch", "none"]}} in _rows(run)


# -- 7. an empty validation split ---------------------------------------------------------------------------
def test_an_empty_validation_split_means_no_validation_and_eval_uses_last(acdc3: Path, tmp_path: Path):
    from datakit.pipeline import ConvertOptions, convert
    from datakit.sources.acdc import AcdcSource

    store = tmp_path / "s.h5"
    convert(AcdcSource(acdc3, spacing=6.0, size=32), ConvertOptions(out=store, workers=1, progress=False,
                                                                      ratios=(1.0, 0.0, 0.0)), log=lambda m: None)
    run = tmp_path / "run"
    out = _train(store, run, "--eval-every", 1, steps=2, names=["split 'valid' holds no samples: no validation"])
    assert "no validation" in out.output and "best valid Dice" not in out.output
    assert not (run / "checkpoints" / "best.pt").exists()
    assert not any("valid/dice_mean" in r for r in _rows(run))
    r = run_case(train_app(), ["eval", "--run", run, "--split", "train"], tmp_path, code=0)
    assert "checkpoint step 2" in r.output


# -- 9. one writer per run directory ------------------------------------------------------------------------
def test_a_second_writer_of_a_run_directory_is_refused_naming_the_holder(good_store: Path, tmp_path: Path):
    from datakit.locks import exclusive_lock

    run = tmp_path / "run"
    with exclusive_lock(run, "run directory"):
        _train(good_store, run, code=1, names=["is being written by another process (PID", str(os.getpid())],
               outputs=(".run.lock",))
    assert not run.exists()


def test_resume_of_a_live_run_is_refused_and_its_loader_workers_die_with_it(good_store: Path, tmp_path: Path):
    """A real run (streamed data, two loader workers) in another process: a --resume of it is refused
    naming its PID; killed with kill -9, its workers end within half a second (not torch's ~5 s watchdog)."""
    run = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "train", "run", "--store", str(good_store), "--out", str(run),
                          "--method", "pce", "--max-steps", "100000", "--ckpt-every", "1", "--data", "stream",
                          "--workers", "2", "--valid-split", "", *TINY[:4], "--no-progress", "--device", "cpu"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoints" / "last.pt").is_file():
            assert p.poll() is None and time.monotonic() < deadline, p.stdout.read().decode()
            time.sleep(0.1)
        r = run_case(train_app(), ["run", "--out", run, "--resume"], tmp_path, code=1,
                     names=["is being written by another process", f"PID {p.pid}"], outputs=["run"])
        assert "Traceback" not in r.output
        workers = [int(x) for x in Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()]
        assert len(workers) >= 2
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        assert dead_within(workers, 0.5) == {}
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


# -- 11. a signal between creating a temporary and using it --------------------------------------------------
def test_a_signal_right_after_a_temporary_is_created_leaves_none(tmp_path: Path, monkeypatch):
    import builtins

    from datakit import safe_io

    def open_then_signal(*a, **k):
        f = builtins.open(*a, **k)
        f.close()
        raise KeyboardInterrupt  # SIGTERM / Ctrl-C landing as open() returns

    monkeypatch.setattr(safe_io, "open", open_then_signal, raising=False)
    with pytest.raises(KeyboardInterrupt):
        safe_io.write_file(tmp_path / "last.pt", b"checkpoint")
    assert list(tmp_path.iterdir()) == []
