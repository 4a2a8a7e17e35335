"""``datakit convert <source> SRC --out STORE.h5`` and ``datakit synth <source> DIR``: one command per
entry of :data:`datakit.sources.registry.SOURCES`, every one built here the same way.

A convert command's parameters are: SRC, ``--out``, the source's own options (its ``options``
function), then the options every converter shares, defined once below (scribbles, split, ratios,
seed, workers, on-error, image dtype and compression, overwrite). A synth command's: DIR, the phantom writer's
own options, ``--seed``, ``--overwrite``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_type_hints

import typer

from datakit.choices import IMAGE_COMPRESSIONS, IMAGE_DTYPES, ON_ERROR
from datakit.cli.common import (
    ImageCompressionOpt,
    ImageDtypeOpt,
    OnErrorOpt,
    OutOpt,
    OverwriteOpt,
    RatiosOpt,
    SeedOpt,
    WorkersOpt,
    cli_errors,
    run_conversion,
)
from datakit.cli.scribble_opts import CoverageOpt, ScribbleSeedOpt, ThicknessOpt
from datakit.errors import DatakitError
from datakit.sources.registry import SHARED, SourceSpec

app = typer.Typer(help="Convert a source dataset into a datakit store.", no_args_is_help=True)


def _param(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def _own_params(fn: Callable[..., Any], skip: int = 0) -> tuple[list[inspect.Parameter], list[str]]:
    """The options ``fn`` declares (typed, with their Typer defaults), and the shared ones it asks for."""
    hints = get_type_hints(fn)
    own, shared = [], []
    for p in list(inspect.signature(fn).parameters.values())[skip:]:
        if p.default is SHARED:
            shared.append(p.name)
        else:
            own.append(_param(p.name, hints[p.name], p.default))
    return own, shared


def _with_signature(fn: Callable[..., Any], params: list[inspect.Parameter], doc: str) -> Callable[..., Any]:
    fn.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    fn.__annotations__ = {p.name: p.annotation for p in params}
    fn.__doc__ = doc
    return fn


def convert_command(spec: SourceSpec) -> Callable[..., None]:
    """The ``convert`` command of one source: its own options between the shared ones."""
    own, wants = _own_params(spec.options)
    on_error_opt = OnErrorOpt if spec.on_error_help is None else \
        typer.Option("stop", "--on-error", help=spec.on_error_help)
    shared = [
        _param("scribbles", str, typer.Option(spec.scribbles_default, "--scribbles", help=spec.scribbles_help)),
        _param("scribble_thickness", int | None, ThicknessOpt),
        _param("scribble_coverage", float | None, CoverageOpt),
        _param("scribble_seed", int | None, ScribbleSeedOpt),
        _param("split", str | None, typer.Option(spec.split_default, "--split", help=spec.split_help)),
        _param("ratios", str, RatiosOpt),
        _param("seed", int, SeedOpt),
        _param("workers", int, WorkersOpt),
        _param("on_error", Literal[ON_ERROR], on_error_opt),
        _param("image_dtype", Literal[IMAGE_DTYPES], ImageDtypeOpt),
        _param("image_compression", Literal[IMAGE_COMPRESSIONS], ImageCompressionOpt),
        _param("overwrite", bool, OverwriteOpt),
    ]
    head = [_param("ctx", typer.Context, inspect.Parameter.empty),
            _param("src", Path, typer.Argument(..., help=spec.src_help)),
            _param("out", Path, OutOpt)]
    own_names = [p.name for p in own]
    shared_names = [p.name for p in shared]

    def command(ctx: typer.Context, src: Path, **values: Any) -> None:
        from datakit.cli.scribble_opts import parse_scribbles
        from datakit.store.chunks import ImageFormat

        s = {k: values[k] for k in shared_names}
        mode, synth = parse_scribbles(s["scribbles"], s["seed"] if s["scribble_seed"] is None else s["scribble_seed"],
                                      thickness=s["scribble_thickness"], coverage=s["scribble_coverage"])
        check_scribble_mode(spec, s["scribbles"], mode)
        if s["on_error"] not in ("stop", "skip"):  # before the source reads anything
            raise DatakitError(f"--on-error must be stop or skip, not {s['on_error']!r}")
        image_format = ImageFormat(s["image_dtype"], s["image_compression"])
        kwargs = spec.options(**{k: values[k] for k in own_names}, **{k: s[k] for k in wants})
        kwargs.update({k: s[k] for k in spec.passes})
        if "folder" in spec.scribble_modes:  # the source reads scribble files: auto, none or a folder
            kwargs["scribbles"] = mode
        source = spec.source_class()(src, **kwargs)
        run_conversion(ctx, source, synth, out=values["out"], overwrite=s["overwrite"], workers=s["workers"],
                       on_error=s["on_error"], split=s["split"], ratios=s["ratios"], seed=s["seed"],
                       image_format=image_format)

    command.__name__ = f"convert_{spec.name}"
    return cli_errors(_with_signature(command, head + own + shared, spec.summary))


def check_scribble_mode(spec: SourceSpec, value: str, mode: str | Path) -> None:
    """``--scribbles`` must be one of the modes the source declares."""
    kind = "folder" if isinstance(mode, Path) else "synth" if value.startswith("synth:") else value
    if kind not in spec.scribble_modes:  # only sources without scribble files refuse a mode
        raise DatakitError(f"{spec.name} has no scribble files: --scribbles takes none or synth:ALGO, "
                           f"not {value!r}")


def synth_command(spec: SourceSpec) -> Callable[..., None]:
    """The ``synth`` command of one source: DIR, the phantom writer's own options, --seed, --overwrite."""
    assert spec.synth is not None
    own, _ = _own_params(spec.synth, skip=3)  # (out, seed, overwrite) are the shared ones
    params = [_param("out", Path, typer.Argument(..., help=spec.synth_out_help)), *own,
              _param("seed", int, typer.Option(0, "--seed", help="Random seed.")),
              _param("overwrite", bool, typer.Option(False, "--overwrite",
                                                     help="Write into an existing non-empty folder."))]

    def command(out: Path, seed: int, overwrite: bool, **values: Any) -> None:
        typer.echo(spec.synth(out, seed, overwrite, **values))  # type: ignore[misc]

    command.__name__ = f"synth_{spec.name}"
    return cli_errors(_with_signature(command, params, spec.synth_summary))


def register(groups: dict[str, typer.Typer], synth: typer.Typer) -> None:
    """Add every registered source's commands to their groups (``convert`` / ``splines-to-masks``, ``synth``)."""
    from datakit.sources.registry import SOURCES

    for spec in SOURCES.values():
        groups[spec.group].command(spec.name)(convert_command(spec))
        if spec.synth is not None:
            synth.command(spec.name)(synth_command(spec))
