"""Training methods, one registry: each method names its data streams, whether it has a discriminator,
which samples feed each stream, and its iteration. A new method is one ``register(Method(...))``.

Built in:
- ``maag``: scribbles + unlabelled images + unpaired masks, the multi-scale adversarial attention
  gates of Valvano et al. (MAAG.md);
- ``pce``: the class-weighted partial cross-entropy on scribbles alone (the same UNet);
- ``full``: plain cross-entropy on full masks (the upper bound).

Streams (MAAG.md): ``train_scribble`` + ``train_masks`` splits when the store has both (MAAG's own
split). Otherwise ``maag`` halves the ``train`` split's patients (sorted by id: the first half gives
scribbles and unlabelled images, the second unpaired masks), because its shape prior must come from
other patients than its scribbles; ``pce`` and ``full`` have no such need and use every patient of
``train``. With the MAAG split, ``pce`` and ``full`` use the ``train_scribble`` patients, so the three
methods see the same images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from datakit.constants import IGNORE
from datakit.errors import DatakitError
from datakit.store import Store
from train.augment import augment_masks, augment_pair
from train.data import Streams, complete_masks, with_scribbles
from train.discriminator import fake_scales, real_scales
from train.losses import dynamic_weighting, lsgan_d, lsgan_g, partial_ce

if TYPE_CHECKING:  # the loop imports this module; the step functions only use the Trainer's attributes
    from train.loop import Trainer

Batch = dict[str, dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Method:
    name: str
    help: str
    streams: dict[str, str]  # stream name -> kind in train.data.STREAM_FIELDS; the first sets the epoch
    discriminator: bool
    pick: Callable[[Store], Streams]  # the sample indices of each stream, and how they were chosen
    step: Callable[[Trainer, Batch], dict[str, torch.Tensor]]  # one iteration; returns detached losses


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    METHODS[method.name] = method
    return method


def get(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise DatakitError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}") from None


def names() -> list[str]:
    return list(METHODS)


def resolve_streams(store: Store, method: str | Method) -> Streams:
    """The sample indices of each stream ``method`` (a name or a Method) declares, from its pick (which
    must fill them all)."""
    if isinstance(method, str):
        method = get(method)
    picked = method.pick(store)
    missing = [k for k in method.streams if k not in picked.indices]
    if missing:
        raise DatakitError(f"method {method.name!r} declares stream {missing[0]!r} that its pick "
                           f"function does not fill (it fills {', '.join(picked.indices)})")
    return Streams({k: picked.indices[k] for k in method.streams}, picked.how)


# -- which samples feed the streams ---------------------------------------------------------------------
def _maag_split(store: Store) -> tuple[np.ndarray, np.ndarray, str] | None:
    splits = store.splits
    if "train_scribble" in splits and "train_masks" in splits:
        return (splits["train_scribble"], splits["train_masks"],
                "splits train_scribble (scribbles, unlabelled images) + train_masks (unpaired masks)")
    return None


def _train(store: Store) -> np.ndarray:
    if "train" not in store.splits:
        raise DatakitError(f"the store has no 'train' split (nor train_scribble + train_masks); it has "
                           f"{sorted(store.splits) or 'none'}", store.path)
    return store.splits["train"]


def _patients_of(store: Store, idx: np.ndarray) -> list[str]:
    return sorted(set(store.meta["patient"][idx].tolist()))


def pick_maag(store: Store) -> Streams:
    found = _maag_split(store)
    if found is not None:
        scrib, masks, how = found
        names = ("train_scribble", "train_masks")
    else:
        train = _train(store)
        patients = _patients_of(store, train)
        if len(patients) < 2:
            raise DatakitError(f"split 'train' has {len(patients)} patient; maag needs two or more "
                               "(scribbles from one half, unpaired masks from the other)", store.path)
        half = (len(patients) + 1) // 2
        first = np.isin(store.meta["patient"][train], patients[:half])
        scrib, masks, names = train[first], train[~first], ("train (first half)", "train (second half)")
        how = (f"split train halved by patient: {half} scribble patients ({patients[0]}..{patients[half - 1]}), "
               f"{len(patients) - half} unpaired-mask patients")
    scrib = with_scribbles(store, scrib, names[0])
    if not len(masks):
        raise DatakitError(f"{names[1]} holds no samples: maag needs unpaired masks", store.path)
    kept = complete_masks(store, masks, names[1])
    if len(kept) < len(masks):
        how += (f"; {len(masks) - len(kept)} of {len(masks)} unpaired-mask samples left out "
                "(a class with label_state -1)")
    return Streams({"scribble": scrib, "unlabelled": scrib, "masks": kept}, how)


def _own_patients(store: Store) -> tuple[np.ndarray, str, str]:
    found = _maag_split(store)
    if found is not None:
        return found[0], "train_scribble", "split train_scribble (the patients maag takes scribbles from)"
    train = _train(store)
    return train, "train", f"split train, all {len(_patients_of(store, train))} patients"


def pick_pce(store: Store) -> Streams:
    idx, name, how = _own_patients(store)
    return Streams({"scribble": with_scribbles(store, idx, name)}, how + ": scribbles")


def pick_full(store: Store) -> Streams:
    idx, _, how = _own_patients(store)
    return Streams({"full": idx}, how + ": full masks")


# -- one iteration ------------------------------------------------------------------------------------
def _ce_step(tr: Trainer, b: dict[str, torch.Tensor], labels: str, weighted: bool) -> dict[str, torch.Tensor]:
    """One cross-entropy iteration on images and their ``labels`` (scribbles: weighted partial CE)."""
    x, y = b["images"], b[labels]
    if tr.cfg.augment:
        x, (y,) = augment_pair(x, [(y, IGNORE)])
    with tr.autocast():
        out = tr.nets.model(x)
    ce = partial_ce(out.logits, y, weighted=weighted, label_state=b["label_state"])
    return tr.step_g(ce, {"loss/ce": ce})


def step_full(tr: Trainer, batch: Batch) -> dict[str, torch.Tensor]:
    return _ce_step(tr, batch["full"], "masks", weighted=False)


def step_pce(tr: Trainer, batch: Batch) -> dict[str, torch.Tensor]:
    return _ce_step(tr, batch["scribble"], "scribbles", weighted=True)


def step_maag(tr: Trainer, batch: Batch) -> dict[str, torch.Tensor]:
    """The discriminator step first (on detached predictions), then the segmentor against the updated D."""
    cfg, n = tr.cfg, tr.nets
    s = batch["scribble"]
    x, y = s["images"], s["scribbles"]
    xu, m = batch["unlabelled"]["images"], batch["masks"]["masks"]
    if cfg.augment:
        x, (y,) = augment_pair(x, [(y, IGNORE)])
        xu, _ = augment_pair(xu, [])
        m = augment_masks(m)
    b = x.shape[0]
    with tr.autocast():
        out = n.model(torch.cat([x, xu]))
    probs_u = torch.softmax(out.logits[b:].float(), dim=1)
    fake = fake_scales(probs_u, [g[b:] for g in out.multiscale])
    real = real_scales(m, tr.num_classes)
    with tr.autocast():  # one D call on real and fake together; instance noise is the D's own (full scale)
        scores = n.disc([torch.cat([r, f.detach()]) for r, f in zip(real, fake, strict=True)])
    loss_d = lsgan_d(scores[:len(m)], scores[len(m):], cfg.label_flip)
    tr.step_d(loss_d)
    with tr.frozen_disc(), tr.autocast():  # no D weight gradients in the G step: only the fake path
        g = lsgan_g(n.disc_g(fake))
    ce = partial_ce(out.logits[:b], y, label_state=s["label_state"])
    total, w = dynamic_weighting(ce, g, cfg.adv_weight)
    return tr.step_g(total, {"loss/ce": ce, "loss/adv": cfg.adv_weight * g.detach(), "loss/disc": loss_d.detach(),
                             "loss/ce_weight": w})


register(Method("maag", "scribbles + adversarial attention gates (Valvano et al. 2021)",
                {"scribble": "scribble", "unlabelled": "unlabelled", "masks": "masks"}, True, pick_maag, step_maag))
register(Method("pce", "class-weighted partial cross-entropy on scribbles only", {"scribble": "scribble"}, False,
                pick_pce, step_pce))
register(Method("full", "cross-entropy on full masks (the upper bound)", {"full": "full"}, False,
                pick_full, step_full))


def describe() -> dict[str, Any]:
    """name -> help, for the CLI's option text."""
    return {k: m.help for k, m in METHODS.items()}
