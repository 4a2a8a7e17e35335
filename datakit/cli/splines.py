"""``datakit splines-to-masks <source> SRC --out STORE.h5``: spline-labelled datasets to a store (the
commands are the registered sources of group ``splines-to-masks``, built by
:func:`datakit.cli.convert.register`)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Rasterise spline (curve) labels into masks and convert to a datakit store.",
                  no_args_is_help=True)
