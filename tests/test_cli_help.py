"""`datakit --help`, and every sub-command's, reads like the tools users know: exit 0, every option
explained, fixed choices listed (not `<str>`), commands in the order a user meets them."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from datakit.choices import NORMALIZATIONS, SCRIBBLE_ALGORITHMS
from datakit.cli import ORDER, app
from datakit.sources.registry import SOURCES
from tests.cli_help import commands, free_text_mismatch, help_text, option_rows, unboxed, unexplained

# Options whose value is open text (names, paths, lists, specs such as kfold:K/FOLD): `<str>` is right for
# them. Any other option shown as `<str>` takes a fixed set of values and must list it (datakit.choices).
# Every converter shares three (a folder or synth:ALGO, a split spec, ratios); a new source adds its own here.
FREE_TEXT = {
    "stats --split", "preview --split", "merge --classes", "export nnunet --name", "export nnunet --channel-names",
    "convert camus --views", "convert folder --classes", "convert folder --mask-suffix",
    "convert folder --images-dir", "convert folder --masks-dir", "convert folder --mask-values",
    "convert folder --patient-regex", "convert folder --name",
    *(f"{spec.group} {name} {o}" for name, spec in SOURCES.items() for o in ("--scribbles", "--split", "--ratios")),
}


@pytest.mark.parametrize("path", [p for p, _ in commands(app)], ids=lambda p: " ".join(p) or "datakit")
def test_every_help_exits_0_and_shows_usage(path: tuple[str, ...]) -> None:
    assert "Usage: datakit" in help_text(app, path)


def test_every_option_is_explained() -> None:
    assert not unexplained(app), unexplained(app)


def test_only_free_text_options_show_str() -> None:
    assert not free_text_mismatch(app, FREE_TEXT), free_text_mismatch(app, FREE_TEXT)


def test_choices_are_listed_in_help_and_named_by_errors(tmp_path) -> None:
    rows = {f"{r.command} {r.name}": r for r in option_rows(app)}
    assert rows["convert acdc --norm"].shown == f"<{'|'.join(NORMALIZATIONS)}>"  # scale255 included
    assert rows["scribble --algo"].shown == f"<{'|'.join(SCRIBBLE_ALGORITHMS)}>"
    assert rows["convert acdc --on-error"].shown == "<stop|skip>"
    assert "<stop|skip>" in unboxed(help_text(app, ("convert", "acdc")))
    r = CliRunner().invoke(app, ["convert", "acdc", str(tmp_path), "--out", str(tmp_path / "x.h5"),
                                 "--norm", "histogram"])
    assert r.exit_code == 2 and "'histogram' is not one of 'percentile-iqr', 'zscore'" in unboxed(r.output)
    assert not (tmp_path / "x.h5").exists()


def test_commands_are_listed_in_the_order_a_user_meets_them() -> None:
    text = unboxed(help_text(app, ()))
    listed = sorted(ORDER, key=lambda name: text.index(f" {name} "))
    assert listed == list(ORDER) and listed[0] == "convert"
    assert set(ORDER) == {p[0] for p, _ in commands(app) if len(p) == 1}  # every command has its place


@pytest.mark.parametrize(("path", "wrong"), [
    (("export", "nnunet"), "Replace an existing --out"),  # it has no --out
    (("scribble",), "Seed for splits"),  # it makes no splits
    (("synth", "acdc"), "[default: cine]"),
])
def test_no_help_text_from_another_command(path: tuple[str, ...], wrong: str) -> None:
    assert wrong not in unboxed(help_text(app, path))
