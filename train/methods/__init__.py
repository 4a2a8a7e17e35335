"""Training methods, one registry. A method is one ``register(Method(...))``: the data streams it
reads, the networks it needs, its hyper-parameters (a pydantic model: they become ``train run``
options and are saved in the run's config), which samples feed its streams, and its step.

This module imports no torch (``train --help`` stays fast): built-in methods name their pick and
step functions as ``"module:function"`` strings, imported when a run starts. A method of your own
may pass the functions themselves (docs/adding-a-method.md).

Built in (docs/methods.md says what each is, and where we depart from its authors):

- ``maag``: scribbles + unlabelled images + unpaired masks, the multi-scale adversarial attention
  gates of Valvano et al. 2021 (docs/maag.md);
- ``pce``: the class-weighted partial cross-entropy on scribbles alone; ``full``: cross-entropy on
  full masks (the upper bound);
- ``em``, ``tv``, ``gatedcrf``, ``mumford_shah``: pce + a regulariser of the prediction (entropy
  minimisation, total variation, the gated CRF loss, the Mumford-Shah functional);
- ``ustm``: pce + the uncertainty-aware, transformation-consistent mean teacher;
- ``dmpls``, ``dmsps``: two decoders on one encoder, pce on both + their dynamically mixed pseudo
  labels (hard + Dice; soft + cross-entropy);
- ``shapepu``: pce + positive-unlabelled learning of the unlabelled pixels + global consistency
  under cut-out, rotation and flips.

Every scribble method trains on the same stream as pce (the ``train_scribble`` split of MAAG's split,
else every patient of ``train``), with the same network, augmentation and schedule.

Example (a method of your own, here pce with a second term)::

    from pydantic import BaseModel, Field
    from train import methods

    class SharpOptions(BaseModel):
        sharp_weight: float = Field(0.1, ge=0, description="Weight of the entropy term.")

    def step_sharp(ctx, batch):  # ctx: train.methods.context.StepContext
        ...
        return ctx.step_g(total, {"loss/ce": ce})

    methods.register(methods.Method("sharp", "pce + my term", {"scribble": "scribble"},
                                    pick="train.methods.streams:pick_scribble", step=step_sharp,
                                    options=SharpOptions))
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from datakit.errors import DatakitError

if TYPE_CHECKING:  # types only: importing them needs torch
    from datakit.store import Store
    from train.methods.streams import Streams


@dataclass(frozen=True)
class Method:
    """One training method.

    Args:
        name: the ``--method`` value.
        help: one line for ``train run --help``.
        streams: stream name -> kind (``scribble``, ``full``, ``unlabelled``, ``masks``: what each
            reads, see train/data.py); the first stream's epoch is the run's epoch.
        pick: ``store -> Streams``, the sample indices of each stream (or ``"module:function"``).
        step: ``(StepContext, batch) -> losses``: one iteration (or ``"module:function"``); the batch
            is ``{stream: {field: tensor on the device}}``; it returns detached losses to log.
        discriminator: MAAG's multi-scale discriminator is built, optimised and checkpointed.
        aux_decoder: the network gets a second decoder (``model(x, aux=True).aux_logits``).
        teacher: an exponential moving average of the segmentor is kept (``ctx.nets.teacher``).
        needs_gates: the step reads the attention gates' segmentations (refuses ``--network unet``).
        scribble_weights: the class weights of its partial cross-entropy as its authors have them:
            ``batch`` (MAAG's N_total / N_c) or ``none`` (uniform); ``--scribble-weights`` overrides.
        options: a pydantic model of the method's hyper-parameters; each field is a ``train run``
            option (its name must be unique across methods: prefix it with the method's name).

    Example (a registered method; docs/adding-a-method.md registers a new one)::

        >>> from train import methods
        >>> em = methods.get("em")
        >>> em.streams, em.aux_decoder, em.options().em_weight
        ({'scribble': 'scribble'}, False, 0.1)
        >>> methods.get("dmpls").aux_decoder, methods.get("ustm").teacher
        (True, True)
    """

    name: str
    help: str
    streams: dict[str, str]
    pick: Callable[[Store], Streams] | str
    step: Callable[..., dict[str, Any]] | str
    discriminator: bool = False
    aux_decoder: bool = False
    teacher: bool = False
    needs_gates: bool = False
    scribble_weights: Literal["batch", "none"] = "none"
    options: type[BaseModel] | None = None

    def pick_fn(self) -> Callable[[Store], Streams]:
        return _resolve(self.pick)

    def step_fn(self) -> Callable[..., dict[str, Any]]:
        return _resolve(self.step)

    def option_defaults(self) -> dict[str, Any]:
        return self.options().model_dump() if self.options is not None else {}


def _resolve(ref: Callable[..., Any] | str) -> Callable[..., Any]:
    if not isinstance(ref, str):
        return ref
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` (or replace one of the same name). Its option names must be new."""
    if method.scribble_weights not in ("batch", "none"):  # anything else would silently mean uniform
        raise ValueError(f"method {method.name!r}: scribble_weights {method.scribble_weights!r} is not 'batch' "
                         "nor 'none'")
    if method.options is not None:
        for other in METHODS.values():
            if other.name != method.name and other.options is not None:
                clash = set(method.options.model_fields) & set(other.options.model_fields)
                if clash:
                    raise ValueError(f"method {method.name!r}: option {sorted(clash)[0]!r} is already an option "
                                     f"of method {other.name!r}; prefix it with the method's name")
    METHODS[method.name] = method
    return method


def get(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise DatakitError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}") from None


def names() -> list[str]:
    return list(METHODS)


def option_owners() -> dict[str, str]:
    """Option name -> the method it belongs to, for every registered method."""
    return {k: m.name for m in METHODS.values() if m.options is not None for k in m.options.model_fields}


def resolve_streams(store: Store, method: str | Method) -> Streams:
    """The sample indices of each stream ``method`` (a name or a Method) declares, from its pick (which
    must fill them all)."""
    from train.methods.streams import Streams

    if isinstance(method, str):
        method = get(method)
    picked = method.pick_fn()(store)
    missing = [k for k in method.streams if k not in picked.indices]
    if missing:
        raise DatakitError(f"method {method.name!r} declares stream {missing[0]!r} that its pick "
                           f"function does not fill (it fills {', '.join(picked.indices)})")
    return Streams({k: picked.indices[k] for k in method.streams}, picked.how)


# -- the built-in methods: what each is and its hyper-parameters (the maths: train/methods/<module>.py) ---
class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MaagOptions(_Options):
    adv_weight: float = Field(0.2, ge=0, description="Weight of the adversarial term.")
    instance_noise: float = Field(0.2, ge=0, description="Sigma of Gaussian noise on discriminator inputs.")
    label_flip: float = Field(0.1, ge=0, le=1, description="Probability of flipping discriminator targets.")


class EmOptions(_Options):
    em_weight: float = Field(0.1, ge=0, description="Weight of the entropy of the softmax (WSL4MIS: 0.1).")


class TvOptions(_Options):
    tv_weight: float = Field(0.01, ge=0, description="Weight of the total variation of the foreground softmax "
                             "(WSL4MIS: 0.01).")


class GatedCrfOptions(_Options):
    crf_weight: float = Field(0.1, ge=0, description="Weight of the gated CRF loss (WSL4MIS: 0.1).")
    crf_radius: int = Field(5, ge=1, le=16, description="Neighbourhood radius, pixels (WSL4MIS: 5).")
    crf_sigma_xy: float = Field(6.0, gt=0, description="Kernel sigma of position, pixels (WSL4MIS: 6).")
    crf_sigma_intensity: float = Field(0.1, gt=0, description="Kernel sigma of intensity, on each image "
                                       "rescaled to [0, 1] (WSL4MIS: 0.1).")


class MumfordShahOptions(_Options):
    ms_weight: float = Field(0.786432, ge=0, description="Weight of the Mumford-Shah loss, a mean per pixel "
                             "(WSL4MIS: 1e-6 on a sum over a batch of 12 at 256 x 256 = 0.786 per pixel).")


class UstmOptions(_Options):
    ustm_weight: float = Field(1.0, ge=0, description="Weight of the consistency loss at the end of its "
                               "ramp-up (WSL4MIS: 1.0).")
    ustm_ema_decay: float = Field(0.99, ge=0, lt=1, description="EMA decay of the teacher (WSL4MIS: 0.99).")
    ustm_passes: int = Field(8, ge=2, le=64, description="Teacher passes for the uncertainty (WSL4MIS: 8; even).")
    ustm_noise: float = Field(0.1, ge=0, description="Sigma of the teacher's input noise, clamped to twice "
                              "it (WSL4MIS: 0.1).")
    ustm_rampup: float = Field(1.0, gt=0, le=1, description="Fraction of the run over which the consistency "
                               "weight and the uncertainty threshold ramp up (WSL4MIS: the whole run).")


class DmplsOptions(_Options):
    dmpls_weight: float = Field(0.5, ge=0, description="Weight of the pseudo-label Dice loss (the authors: 0.5).")


class DmspsOptions(_Options):
    dmsps_weight: float = Field(8.0, ge=0, description="Weight of the soft pseudo-label cross-entropy at the "
                                "end of its ramp-up (PyMIC: 8).")
    dmsps_rampup: float = Field(1.0, gt=0, le=1, description="Fraction of the run over which its weight ramps up "
                                "(PyMIC: the whole run).")


class ShapePuOptions(_Options):
    shapepu_hole: float = Field(0.15, gt=0, lt=1, description="Side of the cut-out square, a fraction of the "
                                "image side (the authors: 32 px of their 212).")
    shapepu_consistency_weight: float = Field(0.05, ge=0, description="Weight of the global consistency loss "
                                              "(the authors: 0.05).")
    shapepu_pu_weight: float = Field(1.0, ge=0, description="Weight of the PU negative loss (the authors: 1).")
    shapepu_pu_start: float = Field(0.025, ge=0, le=1, description="Fraction of the run before the PU loss "
                                    "starts (the authors: epoch 100 of 4000).")
    shapepu_em_iterations: int = Field(100, ge=1, le=10000, description="EM steps estimating the class "
                                       "ratios of the unlabelled pixels.")


_SCRIBBLE = {"scribble": "scribble"}
_PICK_SCRIBBLE = "train.methods.streams:pick_scribble"

register(Method("maag", "scribbles + adversarial attention gates (Valvano et al. 2021)",
                {"scribble": "scribble", "unlabelled": "unlabelled", "masks": "masks"},
                "train.methods.streams:pick_maag", "train.methods.maag:step", discriminator=True, needs_gates=True,
                scribble_weights="batch", options=MaagOptions))
register(Method("pce", "partial cross-entropy on scribbles only (class-weighted, as MAAG's baseline)", _SCRIBBLE,
                _PICK_SCRIBBLE, "train.methods.supervised:step_pce", scribble_weights="batch"))
register(Method("full", "cross-entropy on full masks (the upper bound)", {"full": "full"},
                "train.methods.streams:pick_full", "train.methods.supervised:step_full"))
register(Method("em", "pce + entropy minimisation (Grandvalet and Bengio 2004)", _SCRIBBLE, _PICK_SCRIBBLE,
                "train.methods.regularised:step_em", options=EmOptions))
register(Method("tv", "pce + total variation of the softmax", _SCRIBBLE, _PICK_SCRIBBLE,
                "train.methods.regularised:step_tv", options=TvOptions))
register(Method("gatedcrf", "pce + the gated CRF loss (Obukhov et al. 2019)", _SCRIBBLE, _PICK_SCRIBBLE,
                "train.methods.regularised:step_gatedcrf", options=GatedCrfOptions))
register(Method("mumford_shah", "pce + the Mumford-Shah loss (Kim and Ye 2019)", _SCRIBBLE, _PICK_SCRIBBLE,
                "train.methods.regularised:step_mumford_shah", options=MumfordShahOptions))
register(Method("ustm", "pce + uncertainty-aware transformation-consistent mean teacher (Liu et al. 2022)",
                _SCRIBBLE, _PICK_SCRIBBLE, "train.methods.ustm:step", teacher=True, options=UstmOptions))
register(Method("dmpls", "two decoders + dynamically mixed pseudo labels (Luo et al. 2022)", _SCRIBBLE,
                _PICK_SCRIBBLE, "train.methods.dual:step_dmpls", aux_decoder=True, options=DmplsOptions))
register(Method("dmsps", "two decoders + dynamically mixed soft pseudo labels (Han et al. 2024)", _SCRIBBLE,
                _PICK_SCRIBBLE, "train.methods.dual:step_dmsps", aux_decoder=True, options=DmspsOptions))
register(Method("shapepu", "PU learning + cut-out global consistency (Zhang and Zhuang 2022)", _SCRIBBLE,
                _PICK_SCRIBBLE, "train.methods.shapepu:step", options=ShapePuOptions))
