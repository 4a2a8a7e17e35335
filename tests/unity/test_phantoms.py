"""`datakit synth unity`: the phantoms' layout."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from datakit.cli import app
from tests.unity.helpers import HEX

runner = CliRunner()


def test_synth_writes_the_unity_layout(unity_phantoms: Path) -> None:
    pngs = sorted(unity_phantoms.glob("png-cache/*/*/*/*.png"))
    assert len(pngs) == 10
    for p in pngs:
        cls, code, frame = p.name[:-4].split("-")
        assert p.parent.parts[-3:] == (cls, code[:2], code[2:4]) and HEX.match(code) and len(frame) == 4
    assert {p.parts[-4] for p in pngs} == {"01", "02"}
    modes = {Image.open(p).mode for p in pngs}
    assert modes == {"L", "RGB"}
    labels = json.loads((unity_phantoms / "labels-all.json").read_text())
    assert set(labels) == {p.name for p in pngs}
    variants = {type(e["labels"]["curve-lv-endo"]).__name__ for e in labels.values()}
    assert variants == {"dict", "list"}  # both JSON variants
    types = [inst["type"] for e in labels.values() for v in e["labels"].values()
             for inst in (v if isinstance(v, list) else [v])]
    assert {"curve", "point", "off", "blurred"} <= set(types)
    for stem in ("labels-train", "labels-tune", "labels-ival"):
        part = json.loads((unity_phantoms / f"{stem}.json").read_text())
        assert (unity_phantoms / f"{stem}.txt").read_text().split() == list(part)
    assert len(json.loads((unity_phantoms / "labels-ival.json").read_text())) == 2


def test_synth_cli_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    res = runner.invoke(app, ["synth", "unity", str(tmp_path / "u"), "--videos", "1", "--frames", "1"])
    assert res.exit_code == 0, res.output
    assert "wrote 1 frames of 1 Unity phantom videos" in res.output
    res = runner.invoke(app, ["synth", "unity", str(tmp_path / "u"), "--videos", "1"])
    assert res.exit_code == 1 and "--overwrite" in res.output


def test_help_lists_the_commands() -> None:
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0 and "splines-to-masks" in res.output
    res = runner.invoke(app, ["synth", "--help"])
    assert res.exit_code == 0 and "unity" in res.output
