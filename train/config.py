"""Training configuration: one pydantic model; TOML file < CLI options; saved as RUN_DIR/config.toml.

Every field is a ``train run`` option (``max_steps`` -> ``--max-steps``; booleans ``--x/--no-x``).
Defaults follow MAAG (Adam, lr cycling between 1e-5 and 1e-4, batch 12, ~24k iterations, adversarial
weight 0.2, instance noise 0.2, label flipping 0.1; validation every epoch in the second half of
training).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from datakit.errors import DatakitError

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    store: Path = Field(description="The datakit store (HDF5) to train from.")
    out: Path = Field(description="Run directory: config.toml, metrics.jsonl, checkpoints/.")
    method: str = Field(
        "maag", description="A method of train.methods: maag (scribbles + adversarial attention gates), "
        "pce (partial CE on scribbles only), full (full masks: upper bound).")
    max_steps: int = Field(24000, ge=1, description="Training iterations (MAAG: 450 epochs of 54).")
    batch_size: int = Field(12, ge=1, description="Samples per stream per iteration (per rank under DDP).")
    lr: float = Field(1e-4, gt=0, description="Adam learning rate (segmentor and discriminator); the upper "
                      "bound of the cyclic schedule, whose lower bound is lr / 10.")
    lr_schedule: Literal["cyclic", "constant", "cosine"] = Field(
        "cyclic", description="cyclic (MAAG: triangular between lr/10 and lr per epoch, decayed by "
        "1 / (1 + 1e-4 epoch)), constant, or cosine decay to 0.")
    lr_half_period: int = Field(20, ge=1, description="Half-period of the cyclic schedule, in scribble epochs.")
    adv_weight: float = Field(0.2, ge=0, description="Weight of the adversarial term (maag).")
    instance_noise: float = Field(0.2, ge=0, description="Sigma of Gaussian noise on discriminator inputs.")
    label_flip: float = Field(0.1, ge=0, le=1, description="Probability of flipping discriminator targets.")
    width: int = Field(32, ge=1, description="Width of the first UNet level (MAAG: 32; smaller is for tests).")
    augment: bool = Field(True, description="Rotation, translation, brightness/contrast, noise on the device.")
    valid_split: str = Field("valid", description="Split for model selection ('' to skip validation).")
    eval_every: int = Field(0, ge=0, description="Validate every N steps (0: once per scribble epoch).")
    eval_from: float = Field(0.5, ge=0, le=1, description="Validate only after this fraction of max_steps.")
    log_every: int = Field(10, ge=1, description="Write a metrics.jsonl row every N steps (the losses are read, "
                           "and checked for NaN, only then: the one host-device sync of the loop).")
    ckpt_every: int = Field(500, ge=1, description="Save checkpoints/last.pt every N steps (and at the end).")
    data: Literal["auto", "memory", "stream"] = Field(
        "auto", description="memory: the streams' samples read once onto the device; stream: loader "
        "workers read each batch from the store; auto: memory when it fits.")
    workers: int = Field(2, ge=0, description="DataLoader worker processes for --data stream.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto (cuda when available), cpu, cuda.")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="bf16 autocast or fp32; auto: bf16 on CUDA and on CPUs with native bf16 "
        "(AMX / AVX-512 BF16), fp32 elsewhere.")
    compile: bool = Field(False, description="torch.compile (inductor) the segmentor's and discriminator's "
                          "training forwards; eager, with one log line, if compiling fails. Validation, eval and "
                          "predict stay eager.")
    time_budget: float = Field(0.0, ge=0, description="Minutes: stop cleanly before this wall time, "
                               "validating and saving as at the last step (0: no limit).")
    seed: int = Field(0, description="Seed of weights, sampling and augmentation.")
    progress: bool = Field(True, description="Show a progress bar (on stderr, when it is a terminal).")
    tensorboard: bool = Field(False, description="Also write TensorBoard events to RUN_DIR/tb.")


    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        from train import methods

        if v not in methods.names():
            raise ValueError(f"unknown method {v!r}; known methods: {', '.join(methods.names())}")
        return v


def field_names() -> list[str]:
    return list(TrainConfig.model_fields)


def _wrap(e: ValidationError, where: str) -> DatakitError:
    first = e.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "?"
    return DatakitError(f"{key}: {first['msg']}", where)


def load_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise DatakitError("no such config file", path)
    if not path.is_file():  # a FIFO or a folder: reading it would hang or fail
        raise DatakitError("not a regular file", path)
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise DatakitError(f"not valid TOML ({e})", path) from None
    unknown = sorted(set(data) - set(field_names()))
    if unknown:
        raise DatakitError(f"unknown key {unknown[0]!r}; known keys: {', '.join(field_names())}", path)
    return data


def resolve(file_values: dict[str, Any], overrides: dict[str, Any], where: str = "options") -> TrainConfig:
    """TOML values, then CLI overrides (those not None)."""
    values = {**file_values, **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return TrainConfig(**values)
    except ValidationError as e:
        raise _wrap(e, where) from None


def to_toml(cfg: TrainConfig) -> str:
    lines = ["# Resolved configuration of this run (train run --config this-file reproduces it)."]
    for k, v in cfg.model_dump().items():
        if isinstance(v, bool):
            s = "true" if v else "false"
        elif isinstance(v, int | float):
            s = repr(v)
        else:
            s = '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
        lines.append(f"{k} = {s}")
    return "\n".join(lines) + "\n"
