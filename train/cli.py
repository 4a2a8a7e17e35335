"""The ``train`` command: ``run`` (train a method), ``eval`` (3D Dice / HD95 on a split), ``predict``
(label maps), ``postprocess`` (decide post-processing on validation), ``compare`` (evaluations side by
side), ``plot`` (training curves); ``--version``.

``python -m train ...`` and ``torchrun ... -m train run ...`` work the same way. torch is imported
inside the commands so ``train --help`` stays fast. Options with a fixed set of values are ``Literal``
types of train/choices.py (TrainConfig's own for ``run``): ``--help`` lists them, Click names them.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
from pathlib import Path
from typing import Any, Literal

import typer

from datakit.cli.common import cli_errors as datakit_errors
from datakit.cli.common import interrupt_code, version_option
from datakit.errors import DatakitError
from train import __version__
from train.choices import DEVICES, GRIDS, POSTPROCESS, PREDICT_FORMATS, SCORES

HELP = ("Train scribble-supervised segmentation (MAAG and the other methods of --method) from a datakit store; "
        "evaluate, predict, compare.")
app = typer.Typer(help=HELP, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)

INTERRUPTED = "interrupted: files already written are kept (train run: --resume continues from checkpoints/last.pt)"


def cli_errors(fn):
    """datakit's error boundary (DatakitError -> 'error: ...', exit 1), with train's own Ctrl-C
    message: datakit's says nothing was written, but checkpoints and predictions may have been."""
    @functools.wraps(fn)
    def interruptible(*a: Any, **k: Any) -> Any:
        try:
            return fn(*a, **k)
        except KeyboardInterrupt as e:  # Ctrl-C: 130; SIGTERM (handled like Ctrl-C): 143
            _err(INTERRUPTED)
            raise typer.Exit(interrupt_code(e)) from None
    return datakit_errors(interruptible)


def _err(msg: str) -> None:
    typer.echo(msg, err=True)


@app.callback()
def _main(version: bool = version_option("train", __version__)) -> None:
    pass


# -- run: every TrainConfig field becomes an option ------------------------------------------------
def _config_options() -> list[inspect.Parameter]:
    """One option per TrainConfig field, then one per option of each registered method ("[em] ..."):
    choices listed, defaults shown, required ones marked."""
    from train import methods
    from train.config import TrainConfig

    fields = [(name, f, "") for name, f in TrainConfig.model_fields.items()]
    for m in methods.METHODS.values():
        if m.options is not None:
            fields += [(name, f, m.name) for name, f in m.options.model_fields.items()]
    params = []
    for name, f, owner in fields:
        flag = "--" + name.replace("_", "-")
        ann: Any = f.annotation
        help_ = (f"({owner}) " if owner else "") + (f.description or "")
        if name == "method":  # the methods registered when the command is built (train.methods)
            ann = Literal[tuple(methods.names())]
        if name in ("store", "out"):
            decls = [flag] + (["-o"] if name == "out" else [])
            help_ += " Required, unless given by --config or --resume."
        elif ann is bool:
            decls = [f"{flag}/--no-{flag[2:]}"]
        else:
            decls = [flag]
        default = f.default if not f.is_required() else None
        if default is not None and not isinstance(default, Path):
            help_ += f" (default: {str(default).lower() if isinstance(default, bool) else default})"
        option = typer.Option(None, *decls, help=help_, show_default=False)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                        annotation=ann | None))
    return params


def _run(config: Path | None = None, resume: bool = False, overwrite: bool = False, **values: Any) -> None:
    from train.config import as_written, load_toml, resolve
    from train.loop import train
    from train.rundir import check_run_dir

    if resume:
        if values.get("out") is None:
            raise DatakitError("--resume needs --out RUN_DIR")
        if not (values["out"] / "checkpoints" / "last.pt").is_file():  # checked again under the lock
            check_run_dir(values["out"], True, False)
        saved = values["out"] / "config.toml"
        file_values = as_written(load_toml(saved)) if saved.is_file() else {}
        where = str(saved)
        if config is not None:
            raise DatakitError("--resume continues with RUN_DIR/config.toml; --config is not allowed with it")
    else:
        file_values = load_toml(config) if config is not None else {}
        where = str(config) if config is not None else "options"
    missing = [k for k in ("store", "out") if values.get(k) is None and k not in file_values]
    if missing:
        raise DatakitError(f"missing --{missing[0]} (give it as an option or in --config)")
    cfg = resolve(file_values, values, where)
    import os
    from contextlib import nullcontext

    from datakit.locks import exclusive_lock
    from datakit.provenance import provenance
    from datakit.safe_io import os_error

    main_rank = int(os.environ.get("RANK", 0)) == 0
    if main_rank:  # the lock sits beside RUN_DIR: its folder must exist (only that folder is made)
        try:
            cfg.out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise os_error(e, cfg.out.parent) from None
    # one writer per run directory, for the whole command: a second run, or a --resume of a live run, is
    # refused naming the holder's PID (under torchrun, rank 0 holds it for every rank)
    with exclusive_lock(cfg.out, "run directory") if main_rank else nullcontext():
        check_run_dir(cfg.out, resume, overwrite)
        # what runs is what was there at the start: a checkout that moves during a long run is not recorded
        prov = {**provenance(), "argv": sys.argv}
        try:
            summary = train(cfg, resume=resume, log=_err, overwrite=overwrite, provenance=prov)
            if main_rank:
                _decide_postprocessing(cfg)
        except OSError as e:  # the environment (a full disk, permissions) while writing: one line
            raise os_error(e, e.filename or cfg.out) from None
    if main_rank:
        best = (f"best valid Dice {summary['best_dice']:.4f} at step {summary['best_step']}"
                if summary["best_dice"] >= 0 else "no validation")
        _err(f"done: {summary['steps']} steps in {summary['wall_s']:.1f} s ({summary['steps_per_s']:.2f} it/s); "
             f"{best}; run in {summary['run_dir']}")


def _decide_postprocessing(cfg: Any) -> None:
    """After training, on rank 0: post-processing decided on the validation split for best.pt and last.pt,
    recorded in both and in RUN_DIR/postprocessing.json (train/decisions.py); nothing without validation."""
    import os

    from train.decisions import decide_for_run
    from train.loop import pick_device

    if not cfg.valid_split:
        return
    device = pick_device(cfg.device, int(os.environ.get("LOCAL_RANK", 0)))
    decisions = decide_for_run(cfg.out, cfg.store, cfg.valid_split, device, log=_err,
                               progress=None if cfg.progress else False)
    said: dict[str, list[str]] = {}  # what was decided -> the checkpoints (best.pt and last.pt often agree)
    for name, d in (decisions or {}).items():
        kept = ", ".join(c for c, keep in d["classes"].items() if keep) or "no class"
        said.setdefault(f"largest component of {kept} (decided on {d['split']})", []).append(name)
    for what, names in said.items():
        _err(f"post-processing of {' and '.join(names)}: {what}; recorded in them and in "
             f"{cfg.out / 'postprocessing.json'}")


def _build_run() -> None:
    """(Re)build ``train run`` from TrainConfig and the registered methods (a method registered later
    needs this called again to appear among the choices)."""
    app.registered_commands[:] = [c for c in app.registered_commands if c.name != "run"]

    def run(**kwargs: Any) -> None:
        _run(**kwargs)

    extra = [
        inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Path | None,
                          default=typer.Option(None, "--config", "-c", help="TOML file of config fields "
                                               "(options given on the command line win).")),
        inspect.Parameter("resume", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                          default=typer.Option(False, "--resume", help="Continue RUN_DIR from checkpoints/last.pt "
                                               "(model, optimisers, schedulers, RNG, data order).")),
        inspect.Parameter("overwrite", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                          default=typer.Option(False, "--overwrite", help="Replace the outputs of an earlier run "
                                               "in RUN_DIR.")),
    ]
    run.__signature__ = inspect.Signature(_config_options() + extra)  # type: ignore[attr-defined]
    run.__doc__ = ("Train a method (--method) from a store.\n\nWrites RUN_DIR/config.toml, metrics.jsonl, "
                   "provenance.json, checkpoints/last.pt and best.pt (best validation Dice), and the "
                   "post-processing decided on validation (postprocessing.json).")
    app.command("run")(cli_errors(run))


_build_run()


# -- eval / predict / postprocess ------------------------------------------------------------------
def _load(checkpoint: Path | None, run: Path | None, store: Path | None, device: str, need_store: bool = True):
    """(checkpoint dict, its path, the Store or None, the model on the device, the device): the plan of
    the checkpoint checked against the store's (train/plan.py)."""
    from datakit.store import Store
    from train import checkpoint as ckpt
    from train import plan
    from train.loop import pick_device

    if (checkpoint is None) == (run is None):
        raise DatakitError("give exactly one of --run RUN_DIR or --checkpoint FILE")
    if run is not None:
        checkpoint = _run_checkpoint(run)
    ck = ckpt.load(checkpoint)  # config, classes and weight shapes checked before any model is built
    s = None
    if store is None and need_store:
        if run is None:
            raise DatakitError("--checkpoint needs --store STORE.h5")
        store = _run_store(ck, checkpoint)
    if store is not None:
        s = Store(store)
        if s.classes != list(ck["classes"]):
            raise DatakitError(f"store classes {s.classes} differ from those of checkpoint {checkpoint}: "
                               f"{list(ck['classes'])}", store)
        if s.channels != int(ck["model_config"]["in_channels"]):
            raise DatakitError(f"store images have {s.channels} channels, the model of checkpoint {checkpoint} "
                               f"expects {ck['model_config']['in_channels']}", store)
        plan.check(ck.get("plan"), s, checkpoint, _err)  # another spacing, size or normalisation: stop
    dev = pick_device(device)
    return ck, checkpoint, s, ckpt.build_model(ck, checkpoint).to(dev), dev


def _run_checkpoint(run: Path) -> Path:
    best, last = run / "checkpoints" / "best.pt", run / "checkpoints" / "last.pt"
    checkpoint = best if best.is_file() else last
    if not checkpoint.is_file():
        raise DatakitError("no checkpoints/best.pt nor last.pt", run)
    return checkpoint


def _run_store(ck: dict[str, Any], checkpoint: Path) -> Path:
    saved = ck.get("config")
    if not isinstance(saved, dict) or not isinstance(saved.get("store"), str):
        raise DatakitError("the checkpoint records no store path (config.store); pass --store", checkpoint)
    store = Path(saved["store"])
    if not store.is_file():  # a relative path is relative to where train run was started
        where = "" if store.is_absolute() else ", relative to the directory train run was started in"
        raise DatakitError(f"the run's store {store} (config.store{where}) is not there; pass --store STORE.h5",
                           checkpoint)
    return store


def _indices(s, split: str):
    idx = s.indices(split)
    if not len(idx):
        raise DatakitError(f"split {split!r} holds no samples (e.g. held-out patients absent from the data)", s.path)
    return idx


def _default_split(s, split: str | None) -> str:
    """--split as given; else test when it has samples, else valid (said on stderr)."""
    if split is not None:
        return split
    for name in ("test", "valid"):
        if len(s.splits.get(name, ())):
            why = "" if name == "test" else " (split test holds no samples)"
            _err(f"split: {name}{why}; --split chooses another")
            return name
    raise DatakitError(f"neither split 'test' nor 'valid' holds samples; pass --split (the store has "
                       f"{', '.join(sorted(s.splits)) or 'no splits'}, or 'all')", s.path)


def _eval_name(run: Path | None, checkpoint: Path, ck: dict[str, Any]) -> str:
    """How train compare names this evaluation: the run folder, else the checkpoint's stem (its run
    folder for RUN/checkpoints/best.pt or last.pt)."""
    if run is not None:
        return run.resolve().name
    if checkpoint.stem in ("best", "last") and checkpoint.parent.name == "checkpoints":
        return checkpoint.resolve().parent.parent.name
    return checkpoint.stem or str(ck.get("method", "model"))


FORMAT_NAMES = {"nifti": "NIfTI", "png": "PNG"}  # as the formats spell themselves

POSTPROCESS_HELP = ("auto: what the checkpoint records (its validation decision; none if it records none); none; "
                    "lcc: the largest connected component of every class.")
DEVICE_HELP = "auto: cuda when available, else cpu."


@app.command("eval")
@cli_errors
def eval_cmd(
    run: Path | None = typer.Option(None, "--run", help="Run directory (uses checkpoints/best.pt, else last.pt)."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="A checkpoint file."),
    store: Path | None = typer.Option(None, "--store", help="Store to evaluate on (default: the run's)."),
    split: str | None = typer.Option(None, help="Split to evaluate, or 'all' (default: test when it has samples, "
                                     "else valid)."),
    postprocess: Literal[POSTPROCESS] = typer.Option("auto", "--postprocess", help=POSTPROCESS_HELP),
    json_out: Path | None = typer.Option(None, "--json", help="Write the results as JSON here."),
    name: str | None = typer.Option(None, help="Name of this evaluation in train compare (default: the run "
                                    "folder, or the checkpoint's name)."),
    device: Literal[DEVICES] = typer.Option("auto", help=DEVICE_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --json file."),
) -> None:
    """3D Dice and HD95 (mm) per class on a split, raw and post-processed.

    Scored per volume (its slices reassembled); mean and std over volumes; --json keeps every volume's."""
    if json_out is not None and json_out.exists() and not overwrite:
        raise DatakitError("exists; pass --overwrite to replace it", json_out)
    ck, ck_path, s, model, dev = _load(checkpoint, run, store, device)
    from datakit.progress import progress_bar
    from datakit.store.check import check_label_values
    from datakit.store.identity import fingerprint
    from train import postprocess as pp
    from train.inference import evaluate

    split = _default_split(s, split)
    indices = _indices(s, split)
    check_label_values(s, ("masks",), indices)  # the ground truth scored against
    ids, applied = pp.resolve(postprocess, ck, s.classes)
    with progress_bar() as bar:  # on a terminal only, as convert's
        task = bar.add_task(f"evaluating {split}", total=len(indices))
        scores = evaluate(model, s, indices, dev, progress=lambda n: bar.advance(task, n), postprocess=ids)
    res = {"split": split, "store": str(s.path), "store_fingerprint": fingerprint(s), "checkpoint": str(ck_path),
           "name": name or _eval_name(run, ck_path, ck), "method": ck.get("method"), "step": int(ck["step"]),
           **scores,
           "postprocessing": {"mode": postprocess, "applied": applied,
                              "classes": [s.classes[i] for i in ids] if ids is not None else [],
                              "decision": pp.recorded(ck)},
           "plan": ck.get("plan")}
    if json_out is not None:
        from datakit.safe_io import os_error, write_file

        try:
            json_out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise os_error(e, json_out.parent) from None
        write_file(json_out, json.dumps(res, indent=1) + "\n", overwrite)  # a unique temporary, renamed
    _print_table(res, s.classes)


def _print_table(res: dict[str, Any], classes: list[str]) -> None:
    def f(v: float | None, nd: int) -> str:
        return "-" if v is None else f"{v:.{nd}f}"

    names = [*classes[1:], "mean"]
    typer.echo(f"{res['split']}: {res['volumes']} volumes, checkpoint step {res['step']}")
    typer.echo(f"post-processing: {res['postprocessing']['applied']}")
    typer.echo("metric   " + " ".join(f"{n:>14}" for n in names))
    blocks = [("", res)] + ([("_pp", res["postprocessed"])] if "postprocessed" in res else [])
    for suffix, r in blocks:
        typer.echo(f"{'dice' + suffix:<9}" + " ".join(f"{f(r['dice'][n], 3) + ' +- ' + f(r['dice_std'][n], 3):>14}"
                                                     for n in names))
        typer.echo(f"{'hd95' + suffix if suffix else 'hd95_mm':<9}"
                   + " ".join(f"{f(r['hd95_mm'][n], 1) + ' +- ' + f(r['hd95_mm_std'][n], 1):>14}" for n in names))


@app.command("predict")
@cli_errors
def predict_cmd(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A checkpoint file (e.g. RUN_DIR/checkpoints/best.pt)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    store: Path | None = typer.Option(None, "--store", help="Store whose images to segment."),
    input_: Path | None = typer.Option(None, "--input", help="New scans instead of a store: a NIfTI volume or 2D "
                                       "image, or a folder of them; prepared with the checkpoint's plan as "
                                       "datakit convert prepares them, the labels written on each scan's own grid."),
    split: str | None = typer.Option(None, help="Split to predict, or 'all' (default: test when it has samples, "
                                     "else valid). For --store."),
    postprocess: Literal[POSTPROCESS] = typer.Option("auto", "--postprocess", help=POSTPROCESS_HELP),
    fmt: Literal[PREDICT_FORMATS] = typer.Option(
        "auto", "--format", help="auto: NIfTI for slices of volumes with a source geometry (e.g. ACDC), PNG for 2D "
        "sources (folder, Unity, CAMUS, merged stores without geometry); png; nifti (refused where there is no "
        "geometry). For --store."),
    grid: Literal[GRIDS] = typer.Option(
        "source", help="The grid of NIfTI files: source (the source image's voxel grid and affine, from "
        "meta/source_*) or stored (the store's pixels, the source's directions). For --store."),
    device: Literal[DEVICES] = typer.Option("auto", help=DEVICE_HELP),
    preview: Path | None = typer.Option(None, help="Also write a PNG montage: image, ground-truth mask and "
                                        "prediction of 8 samples of the split. For --store.", dir_okay=False),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into an existing non-empty folder."),
) -> None:
    """Label maps predicted for a store's split, or for new scans (--input).

    From a store: a PNG per slice (palette, pixel value = class) or a NIfTI per volume.

    From --input: one label map per scan, in the scan's own format and grid."""
    if (store is None) == (input_ is None):
        raise DatakitError("give exactly one of --store STORE.h5 or --input FILE_OR_FOLDER")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise DatakitError("output folder exists and is not empty; pass --overwrite", out)
    if input_ is not None:
        if preview is not None or split is not None or fmt != "auto" or grid != "source":
            raise DatakitError("--preview, --split, --format and --grid are for --store; --input writes each scan's "
                               "label map in the scan's own format and grid")
        return _predict_scans(checkpoint, input_, out, postprocess, device, overwrite)
    # --preview's folder must exist before predicting (the --out folder is made on the way)
    if preview is not None and not preview.parent.is_dir() and preview.parent.resolve() != out.resolve():
        raise DatakitError("output folder does not exist", preview.parent)
    ck, _, s, model, dev = _load(checkpoint, None, store, device)
    from train.postprocess import resolve
    from train.predict_io import auto_format, check_nifti, write_predictions

    split = _default_split(s, split)
    indices = _indices(s, split)
    if fmt == "auto":
        fmt = auto_format(s, indices)
    elif fmt == "nifti":
        check_nifti(s, indices, grid)  # before any prediction is written
    ids, applied = resolve(postprocess, ck, s.classes)
    _err(f"post-processing: {applied}")
    keep = None
    if preview is not None:
        from datakit.preview import pick  # the montage is datakit's preview, with a prediction panel

        keep = {int(i) for i in pick(s, split, 8, 0)}
    from datakit.progress import progress_bar

    with progress_bar() as bar:
        task = bar.add_task(f"predicting {split}", total=len(indices))
        n, kept = write_predictions(model, s, indices, dev, out, fmt, grid, keep=keep,
                                    progress=lambda k: bar.advance(task, k), log=_err, postprocess=ids)
    _err(f"wrote {n} {FORMAT_NAMES[fmt]} files to {out}")
    if preview is not None:
        from datakit.preview import write_preview

        write_preview(s.path, preview, split, predictions=kept)
        _err(f"wrote {preview}")


def _predict_scans(checkpoint: Path, input_: Path, out: Path, postprocess: str, device: str, overwrite: bool) -> None:
    from datakit.progress import progress_bar
    from train.postprocess import resolve
    from train.scans import find_inputs, predict_scans

    inputs = find_inputs(input_, _err)
    ck, _, _, model, dev = _load(checkpoint, None, None, device, need_store=False)
    ids, applied = resolve(postprocess, ck, list(ck["classes"]))
    _err(f"post-processing: {applied}")
    with progress_bar() as bar:
        task = bar.add_task("predicting scans", total=len(inputs))
        written = predict_scans(model, ck, checkpoint, inputs, out, dev, ids, overwrite,
                                progress=lambda k: bar.advance(task, k))
    _err(f"wrote {len(written)} label map(s) to {out}")


@app.command("postprocess")
@cli_errors
def postprocess_cmd(
    run: Path | None = typer.Option(None, "--run", help="Run directory: decide for checkpoints/best.pt and last.pt "
                                    "and write RUN_DIR/postprocessing.json."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="A checkpoint file (rewritten in place)."),
    store: Path | None = typer.Option(None, "--store", help="Store to decide on (default: the run's)."),
    split: str = typer.Option("valid", help="Split to decide on (validation patients)."),
    add_plan: bool = typer.Option(False, "--add-plan", help="Also record the store's plan in a checkpoint that has "
                                  "none (older checkpoints): only for the store it was trained on."),
    device: Literal[DEVICES] = typer.Option("auto", help=DEVICE_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Decide again where a decision is recorded."),
) -> None:
    """Decide post-processing on validation and record it in the checkpoint(s).

    Per class: keep the largest connected component where the mean validation Dice does not drop (nnU-Net).

    train run decides at its end; this command is for older runs and checkpoints."""
    from train import decisions
    from train import postprocess as pp
    from train.loop import pick_device

    if (checkpoint is None) == (run is None):
        raise DatakitError("give exactly one of --run RUN_DIR or --checkpoint FILE")
    if run is not None:
        if add_plan:
            raise DatakitError("--add-plan is for a single --checkpoint (train run records the plan in its own)")
        ck, ck_path, s, _, _ = _load(None, run, store, device)  # checks the store against the checkpoint's plan
        decided = decisions.decide_for_run(run, s.path, split, pick_device(device), overwrite=overwrite, log=_err)
        if decided is None:
            raise DatakitError(f"split {split!r} holds no samples: nothing to decide on", s.path)
        for name, decision in decided.items():
            _err(f"{name}:")
            for line in pp.describe(decision):
                typer.echo(line)
        _err(f"wrote {run / pp.RECORD_FILE} and the decision into {', '.join(decided)}")
        return
    ck, ck_path, s, model, dev = _load(checkpoint, None, store, device)
    if pp.recorded(ck) is not None and not overwrite:
        raise DatakitError("already records a post-processing decision; pass --overwrite to decide again", ck_path)
    from train.plan import store_plan

    plan = None
    if add_plan:
        if ck.get("plan") is not None:
            raise DatakitError("already records a plan (the store it was trained on); --add-plan is for checkpoints "
                               "written before plans were", ck_path)
        plan = store_plan(s)
    from datakit.progress import progress_bar

    indices = _indices(s, split)
    with progress_bar() as bar:
        task = bar.add_task(f"deciding post-processing on {split}", total=len(indices))
        decision = decisions.decide(model, s, indices, dev, int(ck["step"]), progress=lambda n: bar.advance(task, n))
    decisions.record(ck_path, decision, plan)
    for line in pp.describe(decision):
        typer.echo(line)
    _err(f"recorded in {ck_path}" + (" with the store's plan" if plan is not None else ""))


@app.command("compare")
@cli_errors
def compare_cmd(
    evals: list[Path] = typer.Argument(..., help="train eval --json files of the same store and split."),
    reference: str | None = typer.Option(None, "--reference", help="The run the others are tested against "
                                         "(default: the first)."),
    md: Path | None = typer.Option(None, "--md", help="Also write the Markdown table here.", dir_okay=False),
    png: Path | None = typer.Option(None, "--png", help="Box plots per class and metric (PNG).", dir_okay=False),
    scores: Literal[SCORES] = typer.Option("auto", help="auto: the post-processed scores where every eval has "
                                           "them, else the raw ones; raw; postprocessed."),
    resamples: int = typer.Option(10000, min=100, help="Bootstrap resamples (over patients)."),
    seed: int = typer.Option(0, help="Seed of the bootstrap."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing --md / --png files."),
) -> None:
    """Paired comparison of evaluations of one store and split: a Markdown table and box plots.

    Mean Dice and HD95 per class, 95 % bootstrap intervals over patients, Wilcoxon p-values against --reference."""
    from datakit.safe_io import replace_file, write_file
    from datakit.store.writer import check_writable
    from train.compare import box_plots, compare, load_runs, markdown

    for target in (md, png):
        if target is not None:
            check_writable(target, overwrite)
    runs, used = load_runs(evals, scores)
    result = compare(runs, reference, resamples, seed)
    table = markdown(result, runs, used)
    typer.echo(table, nl=False)
    if md is not None:
        write_file(md, table, overwrite)
        _err(f"wrote {md}")
    if png is not None:
        with replace_file(png, overwrite) as f:
            box_plots(result, used, f)
        _err(f"wrote {png}")


@app.command("plot")
@cli_errors
def plot_cmd(
    runs: list[Path] = typer.Argument(..., help="Run directories (each with its metrics.jsonl)."),
    out: Path = typer.Option(..., "--out", "-o", help="PNG to write.", dir_okay=False),
    title: str = typer.Option("", help="Figure title (default: the runs' names)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
) -> None:
    """Training curves of one or more runs in one PNG: validation Dice (mean, per class), losses."""
    from datakit.safe_io import replace_file
    from datakit.store.writer import check_writable
    from train.curves import plot_runs, read_run

    check_writable(out, overwrite)
    curves = [read_run(r) for r in runs]  # every run read before anything is written
    with replace_file(out, overwrite) as f:  # a temporary unique to this call, renamed when complete
        plot_runs(curves, f, title)
    _err(f"wrote {out}: " + ", ".join(f"{c.label} ({len(c.rows)} rows)" for c in curves))


def main() -> None:
    from datakit.cli.fast_exit import run_then_exit

    run_then_exit(lambda: app(prog_name="train" if not sys.argv[0].endswith("__main__.py") else "python -m train"))
