"""Training configuration: one pydantic model; TOML file < CLI options; saved as RUN_DIR/config.toml.

Every field is a ``train run`` option (``max_steps`` -> ``--max-steps``; booleans ``--x/--no-x``), and
so is every hyper-parameter a method declares (``train.methods``: e.g. ``--em-weight``). A run's
config holds the core fields and its own method's options; an option of another method is refused
when given a value other than its default. Defaults follow MAAG (Adam, lr cycling between 1e-5 and
1e-4, batch 12, ~24k iterations; validation every epoch in the second half of training).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from datakit.errors import DatakitError

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)  # extras: the method's options, checked below

    store: Path = Field(description="The datakit store (HDF5) to train from.")
    out: Path = Field(description="Run directory: config.toml, metrics.jsonl, checkpoints/.")
    method: str = Field("maag", description="The training method (train.methods); the options marked with "
                        "a method's name are its own.")
    network: Literal["attention_unet", "unet"] = Field(
        "attention_unet", description="The segmentor: attention_unet (MAAG's UNet with attention gates) or unet "
        "(the same without gates; not for maag).")
    scribble_weights: Literal["auto", "batch", "none"] = Field(
        "auto", description="Class weights of the partial cross-entropy on scribbles: batch (MAAG's N_total / N_c "
        "from the batch's scribble pixels), none (uniform, as WSL4MIS and PyMIC), auto (the method's authors' "
        "choice: batch for maag and pce, none for the other scribble methods).")
    max_steps: int = Field(24000, ge=1, description="Training iterations (MAAG: 450 epochs of 54).")
    batch_size: int = Field(12, ge=1, description="Samples per stream per iteration (per rank under DDP).")
    lr: float = Field(1e-4, gt=0, description="Adam learning rate (segmentor and discriminator); the upper "
                      "bound of the cyclic schedule, whose lower bound is lr / 10.")
    lr_schedule: Literal["cyclic", "constant", "cosine"] = Field(
        "cyclic", description="cyclic (MAAG: triangular between lr/10 and lr per epoch, decayed by "
        "1 / (1 + 1e-4 epoch)), constant, or cosine decay to 0.")
    lr_half_period: int = Field(20, ge=1, description="Half-period of the cyclic schedule, in scribble epochs.")
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

    @model_validator(mode="before")
    @classmethod
    def _method_and_its_options(cls, data: Any) -> Any:
        """A known method; its options validated by its own model (defaults filled in); another
        method's options dropped when at their default, refused otherwise."""
        if not isinstance(data, dict):
            return data
        from train import methods

        name = data.get("method", cls.model_fields["method"].default)
        if name not in methods.METHODS:
            raise OptionError("method", f"unknown method {name!r}; known methods: {', '.join(methods.names())}")
        method = methods.get(name)
        owners = methods.option_owners()
        core, mine, out = set(cls.model_fields), {}, {}
        for key, value in data.items():
            owner = owners.get(key)
            if key in core:
                out[key] = value
            elif owner == name:
                mine[key] = value
            elif owner is None:
                raise OptionError(key, f"unknown option; known: {', '.join(field_names())}")
            elif value != methods.get(owner).option_defaults()[key]:
                raise OptionError(key, f"is an option of method {owner!r}; this run's method is {name!r}")
        if method.options is not None:
            try:
                out.update(method.options(**mine).model_dump())
            except ValidationError as e:
                first = e.errors()[0]
                raise OptionError(str(first["loc"][0]) if first["loc"] else name, _plain(first)) from None
        if method.needs_gates and out.get("network", cls.model_fields["network"].default) != "attention_unet":
            raise OptionError("network", f"method {name!r} reads the attention gates' segmentations; "
                                         f"{out['network']!r} has none (use attention_unet)")
        return out

    def method_options(self) -> BaseModel | None:
        """This run's method's options (its pydantic model), or None for a method without any."""
        from train import methods

        model = methods.get(self.method).options
        return None if model is None else model(**{k: getattr(self, k) for k in model.model_fields})


class OptionError(ValueError):
    """A bad option value, with the option's name (the key of a config file, or a --flag)."""

    def __init__(self, key: str, msg: str):
        super().__init__(f"{key}: {msg}")
        self.key, self.msg = key, msg


def field_names() -> list[str]:
    """Every key a config may hold: the core fields and every registered method's options."""
    from train import methods

    return list(TrainConfig.model_fields) + list(methods.option_owners())


def _plain(error: dict[str, Any]) -> str:
    """pydantic's message, as a sentence about the value: "must be >= 1 (got 0)"."""
    if error["type"] == "missing":
        return "missing"
    msg = error["msg"]
    msg = msg.removeprefix("Value error, ").removeprefix("Input should be ").removeprefix("input should be ")
    return f"must be {msg} (got {error['input']!r})" if "input" in error and error["type"] != "value_error" else msg


def _wrap(e: ValidationError, where: str, flags: set[str] = frozenset()) -> DatakitError:
    """A ValidationError as one line: ``--max-steps: must be greater than or equal to 1 (got 0)`` for an
    option given on the command line (in ``flags``), ``KEY: ...`` naming the file for a config key."""
    first = e.errors()[0]
    err = first.get("ctx", {}).get("error")
    if isinstance(err, OptionError):
        key, msg = err.key, err.msg
    else:
        key, msg = ".".join(str(p) for p in first["loc"]) or "?", _plain(first)
    if key in flags or where == "options":
        return DatakitError(f"--{key.replace('_', '-')}: {msg}")
    return DatakitError(f"{key}: {msg}", where)


# Options added after runs were already made, and the value that does what the code before them did
# (until --scribble-weights, every method took MAAG's batch-weighted partial CE). A --resume of such a
# run continues with these, not with today's default, so that a run never changes its loss halfway.
BEFORE_OPTION: dict[str, Any] = {"scribble_weights": "batch"}


def as_written(saved: dict[str, Any]) -> dict[str, Any]:
    """A run's saved configuration with the options it predates set to what its code did."""
    return {**BEFORE_OPTION, **saved}


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
    """TOML values, then CLI overrides (those not None). Errors name the --flag, or the key and file."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return TrainConfig(**{**file_values, **given})
    except ValidationError as e:
        raise _wrap(e, where, set(given)) from None


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
