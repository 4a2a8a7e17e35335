"""Malformed checkpoints fed to ``train eval``, ``train predict`` and ``train run --resume``: each is named
with what is wrong, exit 1, no traceback, nothing written, and the config is checked before any model is
built (a width of 1e9 must not try to allocate terabytes)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.robustness.helpers import run_case, train_app

torch = pytest.importorskip("torch")



def _payload(good: Path) -> dict[str, Any]:
    return torch.load(good, map_location="cpu", weights_only=True)


def _edit(fn: Callable[[dict[str, Any]], None]) -> Callable[[Path, Path], None]:
    def write(good: Path, dst: Path) -> None:
        ck = _payload(good)
        fn(ck)
        torch.save(ck, dst)
    return write


def _raw(data: bytes) -> Callable[[Path, Path], None]:
    def write(good: Path, dst: Path) -> None:
        dst.write_bytes(data)
    return write


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    keys = path.split(".")

    def fn(ck: dict[str, Any]) -> None:
        d = ck
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return fn


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    keys = path.split(".")

    def fn(ck: dict[str, Any]) -> None:
        d = ck
        for k in keys[:-1]:
            d = d[k]
        del d[keys[-1]]
    return fn


def _first_weight(fn: Callable[[dict[str, Any], str], None]) -> Callable[[dict[str, Any]], None]:
    def apply(ck: dict[str, Any]) -> None:
        fn(ck["model"], sorted(ck["model"])[0])
    return apply


def _reshape(model: dict[str, Any], key: str) -> None:
    model[key] = torch.zeros(3, 3)


def _remove(model: dict[str, Any], key: str) -> None:
    del model[key]


def _extra(model: dict[str, Any], key: str) -> None:
    model["surprise.weight"] = torch.zeros(1)


def _not_tensor(model: dict[str, Any], key: str) -> None:
    model[key] = [1, 2, 3]


def _truncated(good: Path, dst: Path) -> None:
    dst.write_bytes(good.read_bytes()[:2000])


def _fifo(good: Path, dst: Path) -> None:
    os.mkfifo(dst)


def _folder(good: Path, dst: Path) -> None:
    dst.mkdir()


def _three_channels(good: Path, dst: Path) -> None:
    from train.model import AttentionUNet

    ck = _payload(good)
    model = AttentionUNet(in_channels=3, classes=len(ck["classes"]), width=4)
    ck["model_config"], ck["model"] = model.config, model.state_dict()
    torch.save(ck, dst)


CASES: list[tuple[str, Callable[[Path, Path], None], list[str]]] = [
    ("zero-bytes", _raw(b""), ["empty file"]),
    ("garbage", _raw(b"not a pickle, not a zip" * 20), ["not a readable checkpoint"]),
    ("truncated", _truncated, ["not a readable checkpoint"]),
    ("a-list", lambda g, d: torch.save([1, 2, 3], d), ["not a train checkpoint"]),
    ("foreign-dict", lambda g, d: torch.save({"state_dict": {}}, d), ["not a train checkpoint"]),
    ("fifo", _fifo, ["FIFO"]),
    ("a-folder", _folder, ["a folder"]),
    ("no-model-config", _edit(_drop("model_config")), ["model_config is missing"]),
    ("model-config-a-list", _edit(_set("model_config", [1, 4, 8])), ["model_config is missing or not a mapping"]),
    ("model-config-no-width", _edit(_drop("model_config.width")), ["model_config has no 'width'"]),
    ("model-config-no-classes", _edit(_drop("model_config.classes")), ["model_config has no 'classes'"]),
    ("classes-7", _edit(_set("model_config.classes", 7)), ["model_config classes = 7"]),
    ("width-1e9", _edit(_set("model_config.width", 10**9)), ["width", "1-1024"]),
    ("width-float-1e9", _edit(_set("model_config.width", 1e9)), ["width", "expected an integer"]),
    ("width-text", _edit(_set("model_config.width", "8")), ["width"]),
    ("width-zero", _edit(_set("model_config.width", 0)), ["width"]),
    ("in-channels-0", _edit(_set("model_config.in_channels", 0)), ["in_channels"]),
    ("in-channels-bool", _edit(_set("model_config.in_channels", True)), ["in_channels"]),
    ("weight-wrong-shape", _edit(_first_weight(_reshape)), ["has shape (3, 3)"]),
    ("weight-missing", _edit(_first_weight(_remove)), ["1 missing"]),
    ("weight-unexpected", _edit(_first_weight(_extra)), ["1 unexpected", "surprise.weight"]),
    ("weight-not-a-tensor", _edit(_first_weight(_not_tensor)), ["model: missing or not a mapping of tensors"]),
    ("no-weights", _edit(_drop("model")), ["model: missing"]),
    ("classes-not-a-list", _edit(_set("classes", "background,LV")), ["classes: missing or not a list"]),
    ("classes-other-names", _edit(_set("classes", ["bg", "a", "b", "c"])), ["differ"]),
    ("step-negative", _edit(_set("step", -3)), ["step = -3"]),
    ("step-missing", _edit(_drop("step")), ["step = None"]),
    ("three-channel-model", _three_channels, ["3"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_eval_refuses_malformed_checkpoint(case, checkpoint: Path, good_store: Path, tmp_path: Path) -> None:
    _, make, names = case
    (tmp_path / "out").mkdir()
    bad = tmp_path / "in" / "bad.pt"
    bad.parent.mkdir()
    make(checkpoint, bad)
    run_case(train_app(), ["eval", "--checkpoint", bad, "--store", good_store, "--device", "cpu",
                           "--json", tmp_path / "out" / "e.json"], tmp_path, names=["bad.pt", *names])


@pytest.mark.parametrize("case", [c for c in CASES if c[0] in ("zero-bytes", "width-1e9", "weight-wrong-shape")],
                         ids=lambda c: c[0])
def test_predict_refuses_malformed_checkpoint(case, checkpoint: Path, good_store: Path, tmp_path: Path) -> None:
    _, make, names = case
    (tmp_path / "out").mkdir()
    bad = tmp_path / "in" / "bad.pt"
    bad.parent.mkdir()
    make(checkpoint, bad)
    run_case(train_app(), ["predict", "--checkpoint", bad, "--store", good_store, "--out", tmp_path / "out" / "p",
                           "--device", "cpu"], tmp_path, names=["bad.pt", *names])


def test_eval_run_dir_with_a_broken_last_checkpoint(checkpoint: Path, good_store: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    _edit(_set("model_config.width", 10**9))(checkpoint, run / "checkpoints" / "last.pt")
    run_case(train_app(), ["eval", "--run", run, "--store", good_store, "--device", "cpu"], tmp_path,
             names=["last.pt", "width"])


def test_resume_from_a_broken_checkpoint(checkpoint: Path, good_store: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    shutil.copyfile(good_store, tmp_path / "store.h5")
    run_case(train_app(), ["run", "--resume", "--out", run, "--store", tmp_path / "store.h5", "--width", "4",
                           "--method", "pce", "--workers", "0", "--no-progress", "--max-steps", "2"], tmp_path,
             names=["last.pt", "empty file"], outputs=["run/tb", "run/metrics.jsonl"])
