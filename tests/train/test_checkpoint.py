"""train/checkpoint.py: what is not a checkpoint of this train (an older architecture, a store) is
refused, named, without a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from tests.train.helpers import FAST, invoke  # noqa: E402


def test_checkpoints_of_the_old_architecture_are_refused(small_store: Path, tmp_path: Path):
    run = tmp_path / "r"
    assert invoke("run", "--store", small_store, "--out", run, "--method", "pce", "--max-steps", 1,
                  *FAST, "--valid-split", "").exit_code == 0
    ck = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    ck["version"] = 1
    old = tmp_path / "old.pt"
    torch.save(ck, old)
    r = invoke("eval", "--checkpoint", old, "--store", small_store, "--split", "valid")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "old.pt" in r.output and "older train" in r.output and "architecture has changed" in r.output
    # --resume from such a run is refused the same way
    torch.save(ck, run / "checkpoints" / "last.pt")
    r = invoke("run", "--out", run, "--resume", "--max-steps", 2)
    assert r.exit_code == 1 and "older train" in r.output
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 1


def test_a_store_passed_as_checkpoint_is_named_as_such(small_store: Path):
    r = invoke("eval", "--checkpoint", small_store, "--store", small_store)
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "not a checkpoint: an HDF5 file (a datakit store? pass it with --store)" in r.output
    assert "weights_only" not in r.output


def test_weights_only_keeps_what_predictions_use_and_drops_the_rest(small_store: Path, tmp_path: Path):
    """A dmpls checkpoint as weights: no auxiliary decoder, teacher or optimiser, half precision, and the
    same label maps as the full checkpoint's main decoder (to half-precision rounding)."""
    from train import checkpoint as ckpt

    run = tmp_path / "r"
    assert invoke("run", "--store", small_store, "--out", run, "--method", "dmpls", "--max-steps", 2,
                  *FAST, "--valid-split", "").exit_code == 0
    full = ckpt.load(run / "checkpoints" / "last.pt")
    assert any(k.startswith("aux_decoder.") for k in full["model"])
    w = ckpt.weights_only(full)
    path = tmp_path / "w.pt"
    ckpt.save(path, {k: v for k, v in w.items() if k not in ("format", "version")})
    light = ckpt.load(path)
    assert light["weights_only"] and light["model_config"]["aux_decoder"] is False
    assert not any(k.startswith(("aux_decoder.", "aux_head.")) for k in light["model"])
    assert all(v.dtype == torch.float16 for v in light["model"].values() if v.is_floating_point())
    assert "opt_g" not in light and "teacher" not in light and "disc" not in light
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        a = ckpt.build_model(full)(x).logits
        b = ckpt.build_model(light).float()(x).logits
    assert (a.argmax(1) == b.argmax(1)).float().mean() > 0.99
    r = invoke("eval", "--checkpoint", path, "--store", small_store, "--split", "valid")
    assert r.exit_code == 0, r.output
