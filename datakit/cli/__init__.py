"""The ``datakit`` command. Each command group lives in its own module and is registered here.

Heavy imports (scipy, h5py, torch) happen inside the commands, so ``--help`` stays fast.
"""

from __future__ import annotations

import typer

import datakit.cli.convert_camus  # noqa: F401  (adds `convert camus`)
import datakit.cli.synth_camus  # noqa: F401  (adds `synth camus`)
from datakit import __version__
from datakit.cli import convert, store_cmds, synth

app = typer.Typer(help="Medical-image segmentation datasets to one HDF5 store.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
app.add_typer(convert.app, name="convert")
app.add_typer(synth.app, name="synth")
app.command("info")(store_cmds.info)
app.command("validate")(store_cmds.validate)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"datakit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Medical-image segmentation datasets to one HDF5 store."""


def main() -> None:
    app()
