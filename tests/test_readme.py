"""The README's walkthrough, run from a checkout, leaves git status clean: every file or folder its
commands write in the repository root is ignored."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess

import pytest

from tests.helpers import REPO

OUTPUT_OPTIONS = ("--out", "-o", "--json", "--plots", "--preview")


def readme_outputs() -> set[str]:
    """The first path component of everything the README's console commands write."""
    text = (REPO / "README.md").read_text(encoding="utf-8").replace("\\\n", " ")
    found = set()
    for line in re.findall(r"(?m)^\$ (?:OMP_NUM_THREADS=\d+ )?((?:datakit|train) .*)$", text):
        words = shlex.split(line.split("  #")[0])
        targets = [words[i + 1] for i, w in enumerate(words[:-1]) if w in OUTPUT_OPTIONS]
        if words[1] == "synth":  # datakit synth SOURCE DIR
            targets.append(words[3])
        if words[1:3] == ["export", "nnunet"]:  # datakit export nnunet STORE OUT_DIR
            targets.append(words[4])
        found |= {t.split("/")[0] for t in targets if t not in ("-", "") and not t.startswith(("/", ".."))}
    return found


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="not a git checkout")
def test_the_walkthrough_outputs_are_ignored() -> None:
    outputs = readme_outputs()
    assert {"acdc.h5", "plots", "preview.png", "real", "pred", "demo", "out", "camus"} <= outputs, outputs
    candidates = [c for o in sorted(outputs) for c in (o, o + "/")]  # "/plots/" matches a folder only
    r = subprocess.run(["git", "check-ignore", "--no-index", *candidates], cwd=REPO, capture_output=True, text=True)
    ignored = {p.rstrip("/") for p in r.stdout.split()}
    assert ignored == outputs, f"not in .gitignore: {sorted(outputs - ignored)}"
