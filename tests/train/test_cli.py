"""train/cli.py: --help of every command (choices listed, every option explained, texts right for their
command) and --version; run, eval, predict and plot as a user calls them (options refused, progress,
run folders and provenance, temporaries, Ctrl-C, default splits)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from datakit.store import Store  # noqa: E402
from tests.cli_help import commands, free_text_mismatch, help_text, option_rows, unboxed, unexplained  # noqa: E402
from tests.train.helpers import FAST, invoke, runner  # noqa: E402
from train.choices import DEVICES, GRIDS, POSTPROCESS, PREDICT_FORMATS, SCORES  # noqa: E402
from train.cli import app  # noqa: E402

# Options whose value is open text (split and run names, a title): `<str>` is right for them. Any other option
# shown as `<str>` takes a fixed set of values and must list it (train/choices.py, TrainConfig's Literals).
FREE_TEXT = {"run --valid-split", "eval --split", "eval --name", "predict --split", "postprocess --split",
             "compare --reference", "plot --title"}


# -- --help and --version, as for datakit (tests/test_cli_help.py) -------------------------------------
@pytest.mark.parametrize("path", [p for p, _ in commands(app)], ids=lambda p: " ".join(p) or "train")
def test_every_help_exits_0_and_shows_usage(path: tuple[str, ...]) -> None:
    assert "Usage: train" in help_text(app, path, prog_name="train")


def test_every_option_is_explained() -> None:
    assert not unexplained(app), unexplained(app)


def test_only_free_text_options_show_str() -> None:
    assert not free_text_mismatch(app, FREE_TEXT), free_text_mismatch(app, FREE_TEXT)


def test_choices_are_listed_in_help_and_named_by_errors(tmp_path: Path) -> None:
    rows = {f"{r.command} {r.name}": r for r in option_rows(app)}
    listed = {"eval --postprocess": POSTPROCESS, "predict --postprocess": POSTPROCESS, "predict --format":
              PREDICT_FORMATS, "predict --grid": GRIDS, "compare --scores": SCORES, "run --device": DEVICES,
              **{f"{c} --device": DEVICES for c in ("eval", "predict", "postprocess")}}
    assert {k: rows[k].shown for k in listed} == {k: f"<{'|'.join(v)}>" for k, v in listed.items()}
    assert "<auto|none|lcc>" in unboxed(help_text(app, ("eval",), prog_name="train"))
    missing = tmp_path / "a.json"  # Click refuses the value before the command reads any file
    r = invoke("compare", missing, missing, "--scores", "best")
    assert r.exit_code == 2 and "'best' is not one of 'auto', 'raw', 'postprocessed'" in unboxed(r.output), r.output
    r = invoke("eval", "--run", tmp_path, "--device", "gpu")
    assert r.exit_code == 2 and "'gpu' is not one of 'auto', 'cpu', 'cuda'" in unboxed(r.output), r.output


@pytest.mark.parametrize(("path", "wrong"), [
    ((), "(MAAG, partial CE, full masks)"),  # the methods are more than these three
    (("eval",), "auto | cpu | cuda"),  # the choices are listed by --help itself
])
def test_no_help_text_that_is_wrong_for_its_command(path: tuple[str, ...], wrong: str) -> None:
    assert wrong not in unboxed(help_text(app, path, prog_name="train"))


def test_each_command_is_summed_up_in_one_line() -> None:
    """`train --help` lists each command by its first paragraph: a line broken there shows broken."""
    broken = [p for p, cmd in commands(app) if p and "\n" in (cmd.help or "").strip().split("\n\n")[0]]  # type: ignore[attr-defined]
    assert not broken, broken


def test_version_and_help_do_not_import_torch() -> None:
    from importlib.metadata import version

    import train

    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output == f"train {train.__version__}\n"
    assert train.__version__ == version("datakit")  # the installed package's version (datakit ships train)
    code = "import sys; from train.cli import app; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


# -- the commands --------------------------------------------------------------------------------------


def test_eval_and_predict_cli(small_store: Path, tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import datakit.preview

    run = tiny_run
    out = tmp_path / "eval.json"
    r = invoke("eval", "--run", run, "--split", "test", "--json", out)
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["split"] == "test" and set(res["dice"]) == {"RV", "MYO", "LV", "mean"}
    assert set(res["hd95_mm"]) == {"RV", "MYO", "LV", "mean"}
    assert {"patient", "frame", "dice", "hd95_mm", "slices"} <= set(res["per_patient"][0])
    assert "dice" in r.output and "hd95_mm" in r.output
    r = invoke("eval", "--run", run, "--json", out)
    assert r.exit_code == 1 and "eval.json" in r.output and "--overwrite" in r.output  # exists: refused
    pred = tmp_path / "pred"
    ck = run / "checkpoints" / "last.pt"
    r = invoke("predict", "--checkpoint", ck, "--store", small_store, "--out", pred, "--split", "test")
    assert r.exit_code == 0, r.output
    import nibabel as nib

    files = sorted(pred.glob("*_pred.nii.gz"))  # ACDC stores have meta/source_shape: NIfTI
    s = Store(small_store)
    assert len(files) == 2 * len(set(s.meta["patient"][s.splits["test"]]))
    assert f"wrote {len(files)} NIfTI files to {pred}" in r.output
    img = nib.load(files[0])  # back on the source grid by default
    first = s.meta["patient"] == files[0].name.split("_")[0]
    assert img.shape[:2] == tuple(s.meta["source_shape"][first][0])
    assert np.allclose(img.header.get_zooms()[:2], s.meta["source_spacing"][first][0])
    assert set(np.unique(np.asarray(img.dataobj))) <= {0, 1, 2, 3}
    stored = tmp_path / "stored"
    assert invoke("predict", "--checkpoint", run / "checkpoints" / "last.pt", "--store", small_store, "--out",
                  stored, "--split", "test", "--grid", "stored").exit_code == 0
    img = nib.load(sorted(stored.glob("*.nii.gz"))[0])
    assert img.shape[:2] == (64, 64) and np.allclose(img.header.get_zooms()[:2], (3.0, 3.0))
    png = tmp_path / "png"
    montage = tmp_path / "prediction.png"
    previews: list[dict] = []
    real_preview = datakit.preview.write_preview

    def spy(*a, **k):
        previews.append(k)
        return real_preview(*a, **k)

    monkeypatch.setattr(datakit.preview, "write_preview", spy)
    r = invoke("predict", "--checkpoint", ck, "--store", small_store, "--out", png, "--split", "test",
               "--format", "png", "--preview", montage)
    assert r.exit_code == 0, r.output
    from PIL import Image

    pngs = sorted(png.glob("*.png"))
    assert len(pngs) == len(s.splits["test"]) and f"wrote {len(pngs)} PNG files" in r.output
    im = Image.open(pngs[0])
    assert im.mode == "P" and im.size == (64, 64)
    shown = Image.open(montage)  # image | mask | prediction for up to 8 test samples
    assert shown.size[0] > 600 and shown.size[1] > 200
    # the montage's third panel is the prediction (the one written as PNG) of the samples preview picks
    from datakit.preview import pick

    (kw,) = previews
    shown_pred = kw["predictions"]
    assert set(shown_pred) == {int(i) for i in pick(s, "test", 8, 0)} and len(shown_pred) == 8
    m = s.meta
    for i, lab in shown_pred.items():
        name = "_".join(str(x) for x in (m["patient"][i], m["frame"][i], m["view"][i]) if str(x))
        written = np.asarray(Image.open(png / f"{name}_s{int(m['slice'][i]):02d}.png"))
        assert lab.dtype == np.uint8 and np.array_equal(lab, written)
    r = invoke("predict", "--checkpoint", ck, "--store", small_store, "--out", png)
    assert r.exit_code == 1 and "not empty" in r.output


def test_run_directory_records_provenance(tiny_run: Path):
    import h5py

    import datakit

    p = json.loads((tiny_run / "provenance.json").read_text())
    assert p["torch"] == torch.__version__ and p["datakit"] == datakit.__version__
    assert p["numpy"] == np.__version__ and p["h5py"] == h5py.__version__
    assert "git_commit" in p and p["argv"]


def test_provenance_is_the_checkout_as_the_run_started(small_store: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkout that moves during a long run (a pull, a commit) must not be recorded as what ran."""
    import datakit.provenance
    import train.loop
    from train.loop import train as real_train

    monkeypatch.setattr(datakit.provenance, "git_state", lambda: ("a" * 40, False))

    def checkout_moves(*a, **k):
        summary = real_train(*a, **k)
        monkeypatch.setattr(datakit.provenance, "git_state", lambda: ("b" * 40, True))
        return summary

    monkeypatch.setattr(train.loop, "train", checkout_moves)  # train.cli imports it when the command runs
    r = invoke("run", "--store", small_store, "--out", tmp_path / "run", "--method", "pce", "--max-steps", 1, *FAST,
               "--valid-split", "")
    assert r.exit_code == 0, r.output
    p = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert p["git_commit"] == "a" * 40 and p["git_dirty"] is False


def test_a_runs_relative_store_path_elsewhere_says_pass_store(small_store: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """config.store is recorded as given; from another directory eval --run says so instead of 'no such file'."""
    monkeypatch.chdir(small_store.parent)
    r = invoke("run", "--store", small_store.name, "--out", tmp_path / "run", "--method", "pce", "--max-steps", 1,
               *FAST, "--valid-split", "")
    assert r.exit_code == 0, r.output
    monkeypatch.chdir(tmp_path)
    r = invoke("eval", "--run", tmp_path / "run", "--split", "valid")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert f"the run's store {small_store.name} (config.store, relative to the directory train run was started " \
           "in) is not there; pass --store STORE.h5" in " ".join(r.output.split())
    r = invoke("eval", "--run", tmp_path / "run", "--split", "valid", "--store", small_store)
    assert r.exit_code == 0, r.output


def test_eval_and_predict_show_progress_on_a_terminal(small_store: Path, tiny_run: Path, tmp_path: Path):
    import re

    terminal = {"FORCE_COLOR": "1", "COLUMNS": "120"}  # rich then draws its bar into the captured stderr
    n = len(Store(small_store).indices("test"))
    r = runner.invoke(app, ["eval", "--run", str(tiny_run), "--split", "test"], env=terminal)
    assert r.exit_code == 0, r.output
    assert re.findall(r"evaluating test.*?(\d+/\d+)", r.output)[-1] == f"{n}/{n}"
    r = runner.invoke(app, ["predict", "--checkpoint", str(tiny_run / "checkpoints" / "last.pt"), "--store",
                            str(small_store), "--out", str(tmp_path / "p"), "--split", "test"], env=terminal)
    assert r.exit_code == 0, r.output
    assert re.findall(r"predicting test.*?(\d+/\d+)", r.output)[-1] == f"{n}/{n}"
    assert "evaluating" not in invoke("eval", "--run", tiny_run, "--split", "test").output  # not a terminal


def test_eval_json_never_shares_a_temporary(tiny_run: Path, tmp_path: Path):
    """--json goes through a temporary unique to the run: another run's, here at the fixed name eval once
    used for every run, is left alone, and --overwrite replaces the file."""
    out = tmp_path / "eval.json"
    other = tmp_path / ".eval.json.tmp"
    other.write_text("another run's half-written JSON")
    out.write_text("previous")
    r = invoke("eval", "--run", tiny_run, "--split", "test", "--json", out, "--overwrite")
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["split"] == "test" and other.read_text() == "another run's half-written JSON"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".eval.json.tmp", "eval.json"]


def test_predict_checks_the_preview_folder_before_predicting(small_store: Path, tiny_run: Path, tmp_path: Path):
    pred = tmp_path / "pred"
    r = invoke("predict", "--checkpoint", tiny_run / "checkpoints" / "last.pt", "--store", small_store, "--out",
               pred, "--preview", tmp_path / "nowhere" / "m.png")
    assert r.exit_code == 1 and "output folder does not exist" in r.output and "nowhere" in r.output
    assert not pred.exists()  # refused up front, not after every prediction was written
    # the --out folder itself is made on the way: a montage inside it is fine
    r = invoke("predict", "--checkpoint", tiny_run / "checkpoints" / "last.pt", "--store", small_store, "--out",
               pred, "--split", "valid", "--format", "png", "--preview", pred / "m.png")
    assert r.exit_code == 0, r.output
    assert (pred / "m.png").is_file()


def test_eval_and_predict_refuse_bad_options(small_store: Path, tiny_run: Path, tmp_path: Path):
    ck = tiny_run / "checkpoints" / "last.pt"
    for args in (["--run", tiny_run, "--checkpoint", ck], []):  # both, neither
        r = invoke("eval", *args)
        assert r.exit_code == 1 and "exactly one of --run RUN_DIR or --checkpoint FILE" in r.output, r.output
    r = invoke("eval", "--checkpoint", ck)
    assert r.exit_code == 1 and "--checkpoint needs --store" in r.output
    r = invoke("predict", "--store", small_store, "--out", tmp_path / "p")  # predict takes --checkpoint alone
    assert r.exit_code == 2 and "--checkpoint" in r.output and not (tmp_path / "p").exists()
    # a value outside an option's choices (listed by --help): Click's usage error, exit 2, naming every choice
    for opt, bad, choices in (("--format", "tiff", PREDICT_FORMATS), ("--grid", "world", GRIDS),
                              ("--postprocess", "largest", POSTPROCESS), ("--device", "gpu", DEVICES)):
        r = invoke("predict", "--checkpoint", ck, "--store", small_store, "--out", tmp_path / "p", opt, bad)
        said = unboxed(r.output)
        assert r.exit_code == 2 and f"Invalid value for '{opt}'" in said, r.output
        assert f"{bad!r} is not one of {', '.join(map(repr, choices))}" in said, r.output
        assert not (tmp_path / "p").exists()
    for name, obj in (("weights.pt", {"model": {"w": torch.zeros(2)}}), ("tensor.pt", torch.zeros(2))):
        foreign = tmp_path / name
        torch.save(obj, foreign)  # readable by torch.load, but no train checkpoint
        for cmd, more in (("eval", []), ("predict", ["--out", tmp_path / "p"])):
            r = invoke(cmd, "--checkpoint", foreign, "--store", small_store, *more)
            assert r.exit_code == 1 and "not a train checkpoint" in r.output and name in r.output, r.output
    assert not (tmp_path / "p").exists()


def test_interrupted_run_says_what_is_kept(small_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import train.loop

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(train.loop, "train", interrupted)
    r = invoke("run", "--store", small_store, "--out", tmp_path / "run", *FAST)
    assert r.exit_code == 130
    assert "interrupted" in r.output and "--resume" in r.output and "nothing was written" not in r.output


def test_cli_refuses_bad_input_and_leaves_nothing(small_store: Path, tmp_path: Path):
    run = tmp_path / "run"
    r = invoke("run", "--store", tmp_path / "missing.h5", "--out", run)
    assert r.exit_code == 1 and "no such store file" in r.output and "missing.h5" in r.output
    assert not run.exists()
    r = invoke("run", "--store", small_store, "--out", run, "--method", "gan")
    assert r.exit_code == 2 and "--method" in r.output and not run.exists()  # not one of the listed choices
    cfg = tmp_path / "c.toml"
    cfg.write_text("max_step = 3\n")
    r = invoke("run", "--store", small_store, "--out", run, "--config", cfg)
    assert r.exit_code == 1 and "max_step" in r.output and "c.toml" in r.output and not run.exists()
    r = invoke("run", "--out", run, "--resume")
    assert r.exit_code == 1 and "last.pt" in r.output
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    r = invoke("run", "--store", small_store, "--out", run)
    assert r.exit_code == 1 and "--overwrite" in r.output
    assert [p.name for p in run.iterdir()] == ["notes.txt"]
    r = invoke("run", "--store", small_store, "--out", run, "--overwrite", "--max-steps", 1, "--valid-split", "",
               *FAST)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.toml", "metrics.jsonl", "notes.txt",
                                                   "provenance.json"]
    r = invoke("eval", "--run", tmp_path / "nowhere")
    assert r.exit_code == 1 and "nowhere" in r.output
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    r = invoke("eval", "--checkpoint", bad, "--store", small_store)
    assert r.exit_code == 1 and "bad.pt" in r.output


def test_eval_reports_raw_and_postprocessed(pp_run: Path, tmp_path: Path):
    out = tmp_path / "e.json"
    r = invoke("eval", "--run", pp_run, "--split", "valid", "--json", out)
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    decision = json.loads((pp_run / "postprocessing.json").read_text())["best.pt"]
    kept = [c for c, k in decision["classes"].items() if k]
    assert res["postprocessing"]["mode"] == "auto" and res["postprocessing"]["classes"] == kept
    assert res["postprocessing"]["decision"] == decision
    # raw scores stay at the top level (existing consumers), the post-processed ones beside them
    assert {"dice", "dice_std", "hd95_mm", "hd95_mm_std", "per_patient", "volumes"} <= set(res)
    assert set(res["postprocessed"]["dice"]) == {"RV", "MYO", "LV", "mean"}
    assert res["name"] == "run" and res["method"] == "pce" and len(res["store_fingerprint"]) == 16
    assert re.search(r"^dice_pp ", r.stdout, re.M) and re.search(r"^hd95_pp ", r.stdout, re.M)
    assert "recorded in the checkpoint" in r.stdout
    r = invoke("eval", "--run", pp_run, "--split", "valid", "--json", out, "--overwrite", "--postprocess", "none")
    res = json.loads(out.read_text())
    assert "postprocessed" not in res and res["postprocessing"]["classes"] == [] and "dice_pp" not in r.stdout
    r = invoke("eval", "--run", pp_run, "--split", "valid", "--json", out, "--overwrite", "--postprocess", "lcc")
    assert json.loads(out.read_text())["postprocessing"]["classes"] == ["RV", "MYO", "LV"]
    r = invoke("eval", "--run", pp_run, "--postprocess", "largest")
    assert r.exit_code == 2 and "'largest' is not one of 'auto', 'none', 'lcc'" in unboxed(r.output), r.output


def test_default_split_is_test_when_it_has_samples_else_valid(pp_run: Path, small_store: Path, tmp_path: Path):
    import h5py

    r = invoke("eval", "--run", pp_run)
    assert r.exit_code == 0 and "split: test" in r.output and r.stdout.startswith("test:")
    no_test = tmp_path / "no_test.h5"  # as the MAAG split's store: the test patients are held out
    shutil.copy(small_store, no_test)
    with h5py.File(no_test, "a") as f:
        del f["splits/test"]
        f["splits"].create_dataset("test", data=np.zeros(0, np.int64))
    r = invoke("eval", "--run", pp_run, "--store", no_test, "--json", tmp_path / "e.json")
    assert r.exit_code == 0, r.output
    assert "split: valid (split test holds no samples)" in r.output
    assert json.loads((tmp_path / "e.json").read_text())["split"] == "valid"
    r = invoke("predict", "--checkpoint", pp_run / "checkpoints" / "best.pt", "--store", no_test, "--out",
               tmp_path / "p")
    assert r.exit_code == 0 and "split: valid" in r.output
    assert len(list((tmp_path / "p").glob("*.nii.gz"))) == 2 * len(set(Store(no_test).meta["patient"][
        Store(no_test).splits["valid"]]))


def test_plot_never_shares_a_temporary(tiny_run: Path, tmp_path: Path) -> None:
    """The PNG goes through a temporary unique to the call: one at the name plot once used for every call
    of a process (another thread's, or a run that reused the PID) is left alone."""
    out = tmp_path / "curves.png"
    other = tmp_path / f".curves.png.{os.getpid()}.tmp.png"
    other.write_bytes(b"another call's half-written PNG")
    r = invoke("plot", tiny_run, "--out", out)
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:4] == b"\x89PNG" and other.read_bytes() == b"another call's half-written PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "curves.png"]
