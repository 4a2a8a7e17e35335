"""Shared CLI plumbing: the error boundary, the command line for provenance, common options."""

from __future__ import annotations

import functools
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from datakit.errors import DatakitError

F = TypeVar("F", bound=Callable[..., Any])


def cli_errors(fn: F) -> F:
    """Turn a DatakitError into ``error: <file>: <reason>`` on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DatakitError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted: nothing was written", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]])


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# Options shared by every converter (one definition, so their help reads the same everywhere).
OutOpt = typer.Option(..., "--out", "-o", help="Store to write (.h5).", dir_okay=False)
OverwriteOpt = typer.Option(False, "--overwrite", help="Replace an existing --out.")
WorkersOpt = typer.Option(0, "--workers", "-j", help="Parallel worker processes (0: one per CPU).", min=0)
OnErrorOpt = typer.Option("stop", "--on-error", help="stop: exit 1 on the first bad patient; "
                          "skip: skip it, convert the rest, record why.")
RatiosOpt = typer.Option("0.7,0.15,0.15", "--ratios", help="train,valid,test fractions of patients.")
SeedOpt = typer.Option(0, "--seed", help="Seed for splits and synthetic scribbles.")


def report(rep: Any) -> None:
    for s in rep.skipped:
        typer.echo(f"skipped {s['patient']}: {s['reason']}", err=True)
    typer.echo(rep.summary())
