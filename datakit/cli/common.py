"""Shared CLI plumbing: the error boundary, the command line for provenance, common options."""

from __future__ import annotations

import functools
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from datakit.constants import default_workers
from datakit.errors import DatakitError, printable

if TYPE_CHECKING:
    from datakit.store.chunks import ImageFormat

__all__ = ["default_workers"]  # re-exported for the commands

F = TypeVar("F", bound=Callable[..., Any])


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be: the same clean-up (temporaries removed), exit 143."""


TERMINATED = {"seen": False}  # set by the handler: exit 143 even where Click turned the exception into Abort


def _on_sigterm(signum: int, frame: Any) -> None:
    TERMINATED["seen"] = True
    raise Terminated()


def handle_sigterm() -> None:
    """Treat SIGTERM like Ctrl-C in this process (main thread only; a no-op elsewhere)."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def interrupt_code(e: KeyboardInterrupt) -> int:
    """Exit status of an interrupted command: 143 (128 + SIGTERM) for SIGTERM, 130 for Ctrl-C."""
    return 143 if isinstance(e, Terminated) else 130


def version_option(prog: str, version: str) -> Any:
    """A ``--version`` option for an app's callback: prints ``PROG VERSION`` and exits before any
    command runs (``datakit --version``, ``train --version``)."""

    def show(value: bool) -> None:
        if value:
            typer.echo(f"{prog} {version}")
            raise typer.Exit()

    return typer.Option(False, "--version", callback=show, is_eager=True, help="Print the version and exit.")


def cli_errors(fn: F) -> F:
    """Turn a DatakitError into ``error: <file>: <reason>`` on stderr and exit code 1; an OSError
    likewise (a full disk: ``error: <file>: no space left on device``); Ctrl-C / SIGTERM into a
    message and exit 130 / 143."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DatakitError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None
        except OSError as e:  # the environment (disk full, permissions, I/O), not a bug: one line, exit 1
            from datakit.safe_io import NO_SPACE, is_no_space

            reason = NO_SPACE if is_no_space(e) else (e.strerror or str(e) or type(e).__name__)
            typer.echo(printable(f"error: {e.filename or 'output'}: {reason}"), err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt as e:
            typer.echo(f"{'terminated' if isinstance(e, Terminated) else 'interrupted'}: nothing was written",
                       err=True)
            raise typer.Exit(interrupt_code(e)) from None

    return wrapper  # type: ignore[return-value]


def command_line(ctx: typer.Context | None = None) -> str:
    """The command for provenance: with a context, its path and every resolved parameter (defaults
    included, so the store says exactly how it was made); else the process's argv."""
    if ctx is None:
        return " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]])
    words = ["datakit", *ctx.command_path.split()[1:]]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.param_type_name == "argument":
            words += [str(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
        elif isinstance(value, bool):
            flag = next((o for o in param.opts if o.startswith("--")), param.opts[0])
            off = next((o for o in getattr(param, "secondary_opts", []) if o.startswith("--")), None)
            if value or off:
                words.append(flag if value else off)
        elif value is not None:
            words += [next((o for o in param.opts if o.startswith("--")), param.opts[0]), str(value)]
    return " ".join(shlex.quote(w) for w in words)


# Options shared by every converter (one definition, so their help reads the same everywhere).
OutOpt = typer.Option(..., "--out", "-o", help="Store to write (.h5).", dir_okay=False)
OverwriteOpt = typer.Option(False, "--overwrite", help="Replace an existing --out.")
WorkersOpt = typer.Option(0, "--workers", "-j", min=0,
                          help="Parallel workers: threads or processes, as the source needs (0: one per CPU).")
OnErrorOpt = typer.Option("stop", "--on-error", help="stop: exit 1 on the first bad patient; "
                          "skip: skip it, convert the rest, record why.")
RatiosOpt = typer.Option("0.7,0.15,0.15", "--ratios", help="train,valid,test fractions of patients, summing to 1; "
                         "0 gives an empty split.")
SeedOpt = typer.Option(0, "--seed", help="Seed for splits and synthetic scribbles.")
ImageCompressionOpt = typer.Option("none", "--image-compression", help="none (fastest to write and read) or "
                                   "gzip (float images shrink to about 70 %; masks are always gzip).")
ImageDtypeOpt = typer.Option("float32", "--image-dtype", help="float32, or float16 for half-size images (relative "
                             "precision 2^-11, range +-65504; readers cast to float32).")


def run_conversion(ctx: typer.Context, source: Any, synth: Any, *, out: Path, overwrite: bool, workers: int,
                   on_error: str, split: str | None, ratios: str, seed: int,
                   image_format: ImageFormat | None = None) -> None:
    """The end every ``convert`` command shares: options -> pipeline -> one-line report."""
    from datakit.pipeline import ConvertOptions, convert
    from datakit.splits import parse_ratios
    from datakit.store.chunks import ImageFormat

    opts = ConvertOptions(out=out, overwrite=overwrite, workers=workers or default_workers(), on_error=on_error,
                          split=split, ratios=tuple(parse_ratios(ratios)), seed=seed, synth=synth,
                          command=command_line(ctx), image_format=image_format or ImageFormat())
    report(convert(source, opts, log=lambda m: typer.echo(m, err=True)))


def report(rep: Any) -> None:
    for s in rep.skipped:
        typer.echo(printable(f"skipped {s['patient']}: {s['reason']}"), err=True)
    typer.echo(printable(rep.summary()))
