"""``datakit synth <source> DIR``: small phantom datasets in the exact source layouts (one command per
registered source with a phantom writer, built by :func:`datakit.cli.convert.register`)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Write a small phantom dataset in a source's exact layout.", no_args_is_help=True)
