"""Which samples feed a method's streams (its ``pick``), from the store's splits.

- With MAAG's split (the store has ``train_scribble`` and ``train_masks``): maag takes scribbles and
  unlabelled images from ``train_scribble`` and unpaired masks from ``train_masks``; every other
  method trains on ``train_scribble`` (the same images as maag's scribbles).
- Otherwise maag halves the ``train`` split's patients, sorted by id: the first half (rounded up)
  gives scribbles and unlabelled images, the second half unpaired masks (its shape prior must come
  from other patients than its scribbles); the other methods train on every patient of ``train``.

Scribble streams keep only samples with a scribble (``meta/scribble_source`` not ``none``); the
unpaired-mask stream only complete masks (``label_state`` >= 0 for every class).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datakit.errors import DatakitError
from datakit.store import Store


@dataclass
class Streams:
    """Sample indices of each stream a method needs, and how they were chosen (for the log)."""

    indices: dict[str, np.ndarray]
    how: str


def with_scribbles(store: Store, idx: np.ndarray, split: str) -> np.ndarray:
    """The samples of ``idx`` that have a scribble; none at all is an error naming the split."""
    keep = idx[store.meta["scribble_source"][idx] != "none"]
    if not len(keep):
        raise DatakitError(f"split {split!r} has no scribbles (meta/scribble_source is 'none' for all its "
                           "samples); convert with --scribbles auto (manual files) or synth:ALGO", store.path)
    return keep


def complete_masks(store: Store, idx: np.ndarray, split: str) -> np.ndarray:
    """Samples whose mask is complete: label_state >= 0 for every class.

    The discriminator takes these masks as real shapes; a mask with an unknown class (CAMUS
    sequence frames are all 255; merged and Unity stores leave unannotated classes in the
    background) would teach it wrong shapes.
    """
    ls = store.file["label_state"][()]
    keep = idx[(ls[idx] >= 0).all(axis=1)]
    if not len(keep):
        raise DatakitError(f"split {split!r} has no sample with a complete mask (label_state >= 0 for every "
                           f"class, {len(idx)} samples checked): maag needs unpaired full masks", store.path)
    return keep


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


def pick_scribble(store: Store) -> Streams:
    """The scribble stream of pce and every scribble method but maag."""
    idx, name, how = _own_patients(store)
    return Streams({"scribble": with_scribbles(store, idx, name)}, how + ": scribbles")


def pick_full(store: Store) -> Streams:
    idx, _, how = _own_patients(store)
    return Streams({"full": idx}, how + ": full masks")
