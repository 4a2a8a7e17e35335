"""train/config.py: TOML round trip, unknown keys and files named, method options validated and saved."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from datakit.errors import DatakitError  # noqa: E402
from tests.train.helpers import FAST, invoke  # noqa: E402
from train.config import load_toml, resolve, to_toml  # noqa: E402


def test_config_toml_round_trip_and_errors(tmp_path: Path):
    f = tmp_path / "c.toml"
    f.write_text('store = "s.h5"\nout = "runs/x"\nmethod = "pce"\nmax_steps = 7\n')
    cfg = resolve(load_toml(f), {"max_steps": 9, "lr": None}, str(f))
    assert cfg.method == "pce" and cfg.max_steps == 9 and cfg.lr == 1e-4
    again = tmp_path / "again.toml"
    again.write_text(to_toml(cfg))
    assert resolve(load_toml(again), {}) == cfg
    f.write_text('store = "s.h5"\nbatchsize = 3\n')
    with pytest.raises(DatakitError, match="unknown key 'batchsize'") as e:
        load_toml(f)
    assert str(f) in str(e.value)
    with pytest.raises(DatakitError, match="method") as e:
        resolve({"store": "s", "out": "o"}, {"method": "gan"})
    assert "unknown method 'gan'; known methods: maag, pce, full" in str(e.value)
    f.write_text("store = [\n")
    with pytest.raises(DatakitError, match="not valid TOML"):
        load_toml(f)


def test_a_config_that_is_not_a_regular_file_is_named(tmp_path: Path):
    import os

    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    r = invoke("run", "--config", fifo)
    assert r.exit_code == 1 and "not a regular file" in r.output and "config.toml" in r.output


def test_method_options_are_validated_named_and_saved(small_store: Path, tmp_path: Path):
    run = tmp_path / "r"
    r = invoke("run", "--store", small_store, "--out", run, "--method", "gatedcrf", "--crf-radius", 0, *FAST)
    assert r.exit_code == 1 and "--crf-radius: must be greater than or equal to 1 (got 0)" in r.output, r.output
    assert "Value error" not in r.output and not run.exists()
    r = invoke("run", "--store", small_store, "--out", run, "--method", "em", "--tv-weight", 0.5, *FAST)
    assert r.exit_code == 1 and "--tv-weight: is an option of method 'tv'; this run's method is 'em'" in r.output
    r = invoke("run", "--store", small_store, "--out", run, "--method", "em", "--em-weight", 0.3, "--max-steps", 1,
               "--valid-split", "", *FAST)
    assert r.exit_code == 0, r.output
    saved = (run / "config.toml").read_text()
    assert "em_weight = 0.3" in saved and "tv_weight" not in saved and "adv_weight" not in saved
    r = invoke("run", "--store", small_store, "--out", tmp_path / "u", "--method", "maag", "--network", "unet",
               *FAST)
    assert r.exit_code == 1 and "--network: method 'maag' reads the attention gates" in r.output, r.output
