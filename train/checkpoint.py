"""Checkpoints: plain dicts of tensors and numbers, loadable with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch

from datakit.errors import DatakitError
from train.model import AttentionUNet, build_network, network_kwargs

FORMAT = "datakit-train-checkpoint"
# 2: the authors' MAAG (gates in all four decoder blocks from conv2; their discriminator's 13-channel
# squeeze and dense head). Version-1 weights do not fit these networks.
VERSION = 2
OLD_VERSIONS = {1: "gates in three decoder blocks and a 1x1-conv discriminator head"}


def save(path: Path, payload: dict[str, Any]) -> None:
    """Write to a temporary file beside ``path`` and rename: a crash never leaves half a checkpoint.

    Serialised in memory first, then written as plain bytes: on a full disk torch's own writer fails
    with an opaque RuntimeError, a plain write with ENOSPC ("error: PATH: no space left on device")."""
    from datakit.safe_io import os_error, write_file

    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **payload}, buf)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise os_error(e, path) from None
    write_file(path, buf.getbuffer())


# Checks on model_config before any model is built: (type, min, max) per known key. A key the model's
# constructor takes but this table lacks must still be a plain number, string or bool.
MODEL_CONFIG_RANGES: dict[str, tuple[type, int, int]] = {  # the network's name and flags: see check_model_config
    "in_channels": (int, 1, 16),
    "classes": (int, 2, 255),
    "width": (int, 1, 1024),
}


# the first bytes of files that are sometimes passed where a checkpoint belongs
SIGNATURES = {b"\x89HDF\r\n\x1a\n": "an HDF5 file (a datakit store? pass it with --store)",
              b"\x89PNG": "a PNG image", b"{": "a JSON file (an eval result?)"}


def _check_signature(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(8)
    for magic, what in SIGNATURES.items():
        if head.startswith(magic):
            raise DatakitError(f"not a checkpoint: {what}", path)


def load(path: Path) -> dict[str, Any]:
    """A checkpoint's dict, tensors on the CPU, checked (:func:`check`): a missing, unreadable, foreign
    or malformed file is a DatakitError naming the file and what is wrong with it."""
    from datakit.safe_io import regular_file

    regular_file(path, "checkpoint")
    if path.stat().st_size == 0:
        raise DatakitError("empty file (0 bytes): not a checkpoint", path)
    _check_signature(path)
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # torch's own text advises weights_only=False: unsafe for a foreign file
        if "Unsupported global" in str(e):
            raise DatakitError("not a train checkpoint: it holds Python objects that a safe (weights-only) load "
                               "refuses; train checkpoints hold only tensors, numbers and text", path) from None
        raise DatakitError("not a readable checkpoint (neither a torch file nor a pickle of tensors)", path) from None
    except Exception as e:  # noqa: BLE001 - torch raises several types for a foreign or truncated file
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise DatakitError(f"not a readable checkpoint ({type(e).__name__}{': ' + first if first else ''})",
                           path) from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise DatakitError(f"not a train checkpoint (format {ck.get('format') if isinstance(ck, dict) else None!r})",
                           path)
    version = ck.get("version")
    if version != VERSION:
        if version in OLD_VERSIONS:
            raise DatakitError(f"written by an older train (checkpoint version {version}: {OLD_VERSIONS[version]}); "
                               f"the architecture has changed since (version {VERSION}: the authors' MAAG), so "
                               "its weights cannot be loaded: train again, or use the datakit release that wrote it",
                               path)
        raise DatakitError(f"checkpoint version {version!r} is not one this train reads (it reads {VERSION})", path)
    check(ck, path)  # the version is right: config, classes and weight shapes
    return ck


def _float_tensors(payload: dict[str, Any]) -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) of every floating-point weight and optimiser state a checkpoint holds."""
    out: list[tuple[str, torch.Tensor]] = []
    for part in ("model", "disc", "teacher"):
        for k, v in (payload.get(part) or {}).items():
            if isinstance(v, torch.Tensor) and v.is_floating_point():
                out.append((f"{part} weight {k}", v))
    for part in ("opt_g", "opt_d"):
        for i, state in ((payload.get(part) or {}).get("state") or {}).items():
            for k, v in state.items():
                if isinstance(v, torch.Tensor) and v.is_floating_point():
                    out.append((f"{part} state {i}.{k}", v))
    return out


def non_finite(payload: dict[str, Any]) -> str | None:
    """The name of the first weight or optimiser state holding a NaN or inf, else None (one device read)."""
    tensors = _float_tensors(payload)
    if not tensors or bool(torch.stack([torch.isfinite(t).all() for _, t in tensors]).all()):
        return None
    return next(name for name, t in tensors if not bool(torch.isfinite(t).all()))


def weights_only(ck: dict[str, Any], half: bool = True) -> dict[str, Any]:
    """The part of a checkpoint that ``train eval`` and ``train predict`` read: the segmentor's weights
    (half precision by default: a width-32 model is ~15 MiB instead of ~30), its config, classes and
    step; no discriminator, teacher, auxiliary decoder (predictions use the main one), optimisers or
    RNG states, so ``--resume`` cannot use it."""
    keep = ("format", "version", "step", "method", "classes", "model_config", "config", "image_size", "best_dice",
            "best_step", "plan", "postprocessing", "store_fingerprint")
    out = {k: ck[k] for k in keep if k in ck}
    aux = ("aux_decoder.", "aux_head.")
    out["model"] = {k: (v.half() if half and v.is_floating_point() else v) for k, v in ck["model"].items()
                    if not k.startswith(aux)}
    if isinstance(out.get("model_config"), dict) and out["model_config"].get("aux_decoder"):
        out["model_config"] = {**out["model_config"], "aux_decoder": False}
    out["weights_only"] = True
    return out


def check_model_config(cfg: object, path: Path) -> dict[str, Any]:
    """``model_config`` -> the network constructor's keyword arguments, or a DatakitError naming the key.

    Checked before any model is built (a width of 1e9 would otherwise allocate terabytes): the network
    name (``train.model.NETWORKS``; absent in checkpoints that predate the registry: attention_unet),
    presence of every argument the constructor requires, types and ranges (:data:`MODEL_CONFIG_RANGES`)."""
    import inspect

    if not isinstance(cfg, dict):
        raise DatakitError(f"model_config is missing or not a mapping ({type(cfg).__name__})", path)
    try:
        full = network_kwargs(cfg)
    except ValueError as e:
        raise DatakitError(f"model_config network: {e}", path) from None
    params = inspect.signature(AttentionUNet.__init__).parameters
    kwargs: dict[str, Any] = {}
    for name, p in params.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if name not in full:  # required: no default, or a key the table checks (a default would hide a loss)
            if p.default is p.empty or name in MODEL_CONFIG_RANGES:
                raise DatakitError(f"model_config has no {name!r}", path)
            continue
        value = full[name]
        if name in MODEL_CONFIG_RANGES:
            kind, lo, hi = MODEL_CONFIG_RANGES[name]
            if isinstance(value, bool) or not isinstance(value, kind) or not lo <= value <= hi:
                raise DatakitError(f"model_config {name} = {value!r}: expected an integer {lo}-{hi}", path)
        elif isinstance(p.default, bool) and not isinstance(value, bool):
            raise DatakitError(f"model_config {name} = {value!r}: expected true or false", path)
        elif not isinstance(value, (int, float, str, bool)) and value is not None:
            raise DatakitError(f"model_config {name} = {value!r}: expected a number, string or bool", path)
        kwargs[name] = value
    unknown = sorted(set(full) - set(kwargs))
    if unknown:
        raise DatakitError(f"model_config has an unknown key {unknown[0]!r}", path)
    return kwargs


def check(ck: dict[str, Any], path: Path) -> None:
    """A loaded checkpoint's structure: model_config (see :func:`check_model_config`), classes, step, and
    the weights' names and shapes against the model that config describes (built without memory)."""
    kwargs = check_model_config(ck.get("model_config"), path)
    classes = ck.get("classes")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise DatakitError("classes: missing or not a list of class names", path)
    if "classes" in kwargs and len(classes) != kwargs["classes"]:
        raise DatakitError(f"model_config classes = {kwargs['classes']} but the checkpoint names {len(classes)} "
                           f"classes {classes}", path)
    step = ck.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise DatakitError(f"step = {step!r}: expected a whole number >= 0", path)
    if ck.get("plan") is not None:  # written by train run since plans were (train/plan.py); older ones have none
        from train.plan import check_record

        check_record(ck["plan"], path)
    if ck.get("postprocessing") is not None:
        from train.postprocess import check_record as check_postprocessing

        check_postprocessing(ck["postprocessing"], classes, path)
    weights = ck.get("model")
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise DatakitError("model: missing or not a mapping of tensors", path)
    with torch.device("meta"):  # shapes only: nothing is allocated
        expected = {k: tuple(v.shape) for k, v in AttentionUNet(**kwargs).state_dict().items()}
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise DatakitError(f"model weights do not match model_config: {len(missing)} missing "
                           f"({', '.join(missing[:3])}), {len(unexpected)} unexpected ({', '.join(unexpected[:3])})",
                           path)
    for k, shape in expected.items():
        if tuple(weights[k].shape) != shape:
            raise DatakitError(f"model weight {k} has shape {tuple(weights[k].shape)}, model_config "
                               f"{kwargs} needs {shape}", path)
    bad = non_finite({"model": weights})
    if bad:  # a model that diverged predicts nothing: Dice 0 would be reported as if it were a result
        raise DatakitError(f"{bad} is not finite (NaN or inf): the model diverged before this checkpoint was "
                           "written", path)


def build_model(ck: dict[str, Any], path: Path | None = None) -> AttentionUNet:
    """The model of a checkpoint that :func:`load` returned (config and weights already checked)."""
    where = path or Path("checkpoint")
    check_model_config(ck.get("model_config"), where)
    model = build_network(ck["model_config"])
    try:
        model.load_state_dict(ck["model"])
    except (RuntimeError, KeyError) as e:
        raise DatakitError(f"weights do not fit the model ({str(e).splitlines()[0][:200]})", where) from None
    return model.eval()


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
