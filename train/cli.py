"""The ``train`` command: ``run`` (train), ``eval`` (3D Dice / HD95 on a split), ``predict`` (label maps).

``python -m train ...`` and ``torchrun ... -m train run ...`` work the same way. torch is imported
inside the commands so ``train --help`` stays fast.
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
from datakit.cli.common import interrupt_code
from datakit.errors import DatakitError

app = typer.Typer(help="Train and evaluate segmentation (MAAG, partial CE, full masks) from a datakit store.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)

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
    from train.config import load_toml, resolve
    from train.loop import train
    from train.rundir import check_run_dir

    if resume:
        if values.get("out") is None:
            raise DatakitError("--resume needs --out RUN_DIR")
        if not (values["out"] / "checkpoints" / "last.pt").is_file():  # checked again under the lock
            check_run_dir(values["out"], True, False)
        saved = values["out"] / "config.toml"
        file_values = load_toml(saved) if saved.is_file() else {}
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
        except OSError as e:  # the environment (a full disk, permissions) while writing: one line
            raise os_error(e, e.filename or cfg.out) from None
    if main_rank:
        best = (f"best valid Dice {summary['best_dice']:.4f} at step {summary['best_step']}"
                if summary["best_dice"] >= 0 else "no validation")
        _err(f"done: {summary['steps']} steps in {summary['wall_s']:.1f} s ({summary['steps_per_s']:.2f} it/s); "
             f"{best}; run in {summary['run_dir']}")


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
    run.__doc__ = ("Train a method (--method) from a store. Outputs RUN_DIR/config.toml, metrics.jsonl, "
                   "checkpoints/last.pt and best.pt (best validation Dice).")
    app.command("run")(cli_errors(run))


_build_run()


# -- eval / predict --------------------------------------------------------------------------------
def _load(checkpoint: Path | None, run: Path | None, store: Path | None, device: str):
    from datakit.store import Store
    from train import checkpoint as ckpt
    from train.loop import pick_device

    if (checkpoint is None) == (run is None):
        raise DatakitError("give exactly one of --run RUN_DIR or --checkpoint FILE")
    if run is not None:
        best, last = run / "checkpoints" / "best.pt", run / "checkpoints" / "last.pt"
        checkpoint = best if best.is_file() else last
        if not checkpoint.is_file():
            raise DatakitError("no checkpoints/best.pt nor last.pt", run)
    ck = ckpt.load(checkpoint)  # config, classes and weight shapes checked before any model is built
    if store is None:
        if run is None:
            raise DatakitError("--checkpoint needs --store STORE.h5")
        saved = ck.get("config")
        if not isinstance(saved, dict) or not isinstance(saved.get("store"), str):
            raise DatakitError("the checkpoint records no store path (config.store); pass --store", checkpoint)
        store = Path(saved["store"])
    s = Store(store)
    if s.classes != list(ck["classes"]):
        raise DatakitError(f"store classes {s.classes} differ from those of checkpoint {checkpoint}: "
                           f"{list(ck['classes'])}", store)
    if s.channels != int(ck["model_config"]["in_channels"]):
        raise DatakitError(f"store images have {s.channels} channels, the model of checkpoint {checkpoint} "
                           f"expects {ck['model_config']['in_channels']}", store)
    dev = pick_device(device)
    return ck, checkpoint, s, ckpt.build_model(ck, checkpoint).to(dev), dev


def _indices(s, split: str):
    idx = s.indices(split)
    if not len(idx):
        raise DatakitError(f"split {split!r} holds no samples (e.g. held-out patients absent from the data)", s.path)
    return idx


@app.command("eval")
@cli_errors
def eval_cmd(
    run: Path | None = typer.Option(None, "--run", help="Run directory (uses checkpoints/best.pt, else last.pt)."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="A checkpoint file."),
    store: Path | None = typer.Option(None, "--store", help="Store to evaluate on (default: the run's)."),
    split: str = typer.Option("test", help="Split to evaluate, or 'all'."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the results as JSON here."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --json file."),
) -> None:
    """3D Dice and HD95 (mm) per class and volume on a split; mean and std over volumes."""
    if json_out is not None and json_out.exists() and not overwrite:
        raise DatakitError("exists; pass --overwrite to replace it", json_out)
    ck, ck_path, s, model, dev = _load(checkpoint, run, store, device)
    from datakit.progress import progress_bar
    from datakit.store.check import check_label_values
    from train.inference import evaluate

    indices = _indices(s, split)
    check_label_values(s, ("masks",), indices)  # the ground truth scored against
    with progress_bar() as bar:  # on a terminal only, as convert's
        task = bar.add_task(f"evaluating {split}", total=len(indices))
        scores = evaluate(model, s, indices, dev, progress=lambda n: bar.advance(task, n))
    res = {"split": split, "store": str(s.path), "checkpoint": str(ck_path), "step": int(ck["step"]), **scores}
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
    typer.echo("metric   " + " ".join(f"{n:>14}" for n in names))
    typer.echo("dice     " + " ".join(f"{f(res['dice'][n], 3) + ' +- ' + f(res['dice_std'][n], 3):>14}"
                                      for n in names))
    typer.echo("hd95_mm  " + " ".join(f"{f(res['hd95_mm'][n], 1) + ' +- ' + f(res['hd95_mm_std'][n], 1):>14}"
                                      for n in names))


@app.command("predict")
@cli_errors
def predict_cmd(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A checkpoint file (e.g. RUN_DIR/checkpoints/best.pt)."),
    store: Path = typer.Option(..., "--store", help="Store whose images to segment."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    split: str = typer.Option("all", help="Split to predict, or 'all'."),
    fmt: str = typer.Option("auto", "--format", help="auto (NIfTI for slices of volumes with a source "
                            "geometry, e.g. ACDC; PNG for 2D sources: folder, Unity, CAMUS, merged stores "
                            "without geometry) | png | nifti (refused where there is no geometry)."),
    grid: str = typer.Option("source", help="NIfTI grid: source (the source image's voxel grid and affine, "
                             "from meta/source_*) | stored (the store's pixels, the source's directions)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
    preview: Path = typer.Option(None, help="Also write a PNG montage: image, ground-truth mask and "
                                 "prediction of 8 samples of the split.", dir_okay=False),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into an existing non-empty folder."),
) -> None:
    """Predicted label maps: PNG per slice (palette, pixel value = class) or NIfTI per volume."""
    if fmt not in ("auto", "png", "nifti"):
        raise DatakitError(f"--format must be auto, png or nifti, not {fmt!r}")
    if grid not in ("source", "stored"):
        raise DatakitError(f"--grid must be source or stored, not {grid!r}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise DatakitError("output folder exists and is not empty; pass --overwrite", out)
    # --preview's folder must exist before predicting (the --out folder is made on the way)
    if preview is not None and not preview.parent.is_dir() and preview.parent.resolve() != out.resolve():
        raise DatakitError("output folder does not exist", preview.parent)
    ck, _, s, model, dev = _load(checkpoint, None, store, device)
    from train.predict_io import auto_format, check_nifti, write_predictions

    indices = _indices(s, split)
    if fmt == "auto":
        fmt = auto_format(s, indices)
    elif fmt == "nifti":
        check_nifti(s, indices, grid)  # before any prediction is written
    keep = None
    if preview is not None:
        from datakit.preview import pick  # the montage is datakit's preview, with a prediction panel

        keep = {int(i) for i in pick(s, split, 8, 0)}
    from datakit.progress import progress_bar

    with progress_bar() as bar:
        task = bar.add_task(f"predicting {split}", total=len(indices))
        n, kept = write_predictions(model, s, indices, dev, out, fmt, grid, keep=keep,
                                    progress=lambda k: bar.advance(task, k), log=_err)
    _err(f"wrote {n} {fmt.upper()} files to {out}")
    if preview is not None:
        from datakit.preview import write_preview

        write_preview(s.path, preview, split, predictions=kept)
        _err(f"wrote {preview}")


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
