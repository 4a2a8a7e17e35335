"""Walk every command of a Typer app and read its ``--help`` as a user sees it: a helper for tests of any
Typer app (``datakit``'s in tests/test_cli_help.py; point it at ``train``'s the same way).

>>> rows = option_rows(app)             # every option of every command
>>> [r for r in rows if r.shown == "<str>"]   # free-text options, as --help renders their type
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import typer
import typer.main
from typer.testing import CliRunner


@dataclass(frozen=True)
class OptionRow:
    """One option of one command, as ``--help`` renders it."""

    command: str  # e.g. "convert acdc"
    name: str  # its long form, e.g. "--norm"
    shown: str  # its type as --help shows it, e.g. "<str>", "<stop|skip>", "<int range> [x>=0]"
    help: str


def commands(app: typer.Typer) -> Iterator[tuple[tuple[str, ...], object]]:
    """(path, click command) of the app itself and of every group and command below it, depth first."""
    def walk(cmd: object, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], object]]:
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, (*path, name))
    yield from walk(typer.main.get_command(app), ())


def option_rows(app: typer.Typer) -> list[OptionRow]:
    """Every option (not ``--help``) of every leaf command."""
    rows = []
    for path, cmd in commands(app):
        if getattr(cmd, "commands", None):
            continue
        ctx = typer.Context(cmd, info_name=path[-1] if path else None)  # type: ignore[arg-type]
        for p in cmd.params:  # type: ignore[attr-defined]
            if p.param_type_name != "option" or "--help" in p.opts:
                continue
            name = next((o for o in p.opts if o.startswith("--")), p.opts[0])
            rows.append(OptionRow(" ".join(path), name, str(p.display_type_rich(ctx)), (p.help or "").strip()))
    return rows


def unexplained(app: typer.Typer) -> list[str]:
    """``command --option`` of every option without a help text."""
    return [f"{r.command} {r.name}" for r in option_rows(app) if not r.help]


def free_text_mismatch(app: typer.Typer, free_text: set[str]) -> str:
    """What differs between the options ``--help`` shows as ``<str>`` and ``free_text`` (those whose value
    is open text: names, paths, splits), in words; empty when they are the same."""
    shown = {f"{r.command} {r.name}" for r in option_rows(app) if r.shown == "<str>"}
    if shown == free_text:
        return ""
    return f"list the choices of: {sorted(shown - free_text)}; no longer <str>: {sorted(free_text - shown)}"


def help_text(app: typer.Typer, path: tuple[str, ...], prog_name: str = "datakit") -> str:
    """``--help`` of one command; asserts it exits 0."""
    r = CliRunner().invoke(app, [*path, "--help"], prog_name=prog_name)
    assert r.exit_code == 0, (path, r.output)
    return r.output


def unboxed(text: str) -> str:
    """Console output without rich's box drawing and line wrapping: words separated by single spaces."""
    return re.sub(r"\s+", " ", re.sub(r"[\u2500-\u257f]", " ", text)).strip()
