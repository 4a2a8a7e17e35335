"""Scribble synthesis: a registry of algorithms that draw sparse labels from a dense mask.

Every algorithm has the signature ``fn(mask, n_classes, rng, **params) -> scribble`` where
``mask`` is (H, W) uint8 (255 unknown), and the result is (H, W) uint8 with 255 where unlabelled.
Every scribble pixel must carry the mask's class at that pixel. Algorithms register themselves
with :func:`register`; unknown names are answered with the list of known ones.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from datakit.constants import IGNORE
from datakit.errors import DatakitError

ScribbleFn = Callable[..., np.ndarray]
ALGORITHMS: dict[str, ScribbleFn] = {}


def register(name: str) -> Callable[[ScribbleFn], ScribbleFn]:
    def deco(fn: ScribbleFn) -> ScribbleFn:
        ALGORITHMS[name] = fn
        return fn
    return deco


@functools.cache
def _load_builtin() -> None:
    # Algorithms live in their own modules; importing them fills the registry (once per process).
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")


def get_algorithm(name: str) -> ScribbleFn:
    _load_builtin()
    if name not in ALGORITHMS:
        known = ", ".join(sorted(ALGORITHMS)) or "none installed"
        raise DatakitError(f"unknown scribble algorithm {name!r}; known: {known}")
    return ALGORITHMS[name]


# What identifies a sample, for its scribble seed: Sample fields and meta/ columns of the same names.
SAMPLE_IDENTITY = ("dataset", "patient", "view", "frame", "slice", "source")


def sample_seed(seed: int, identity: Mapping[str, object]) -> int:
    """A per-sample seed from the sample's identity (a Sample's ``vars``, or :func:`stored_identity`
    of its row in a store): the same when converting and when re-drawing a store's scribbles, and
    independent of processing order or worker count."""
    return zlib.crc32("|".join(map(str, (seed, *(identity[k] for k in SAMPLE_IDENTITY)))).encode())


def stored_identity(meta: Mapping[str, Sequence[object]], i: int) -> dict[str, object]:
    """Sample ``i``'s identity from a store's meta/ columns."""
    return {k: meta[k][i] for k in SAMPLE_IDENTITY}


def synthesize(mask: np.ndarray, n_classes: int, algo: str, seed: int, **params: Any) -> np.ndarray:
    fn = get_algorithm(algo)
    out = fn(mask, n_classes, np.random.default_rng(seed), **params)
    # the contract: a scribble pixel always carries the mask's class there
    wrong = (out != IGNORE) & (out != mask)
    out[wrong] = IGNORE
    return out


def check_params(algo: str, params: dict[str, Any]) -> None:
    """Fail fast, before any work, on a parameter the algorithm does not take or a bad value."""
    import inspect

    fn = get_algorithm(algo)
    sig = inspect.signature(fn)
    takes = [p.name for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    for name in params:
        if name not in takes:
            raise DatakitError(f"scribble algorithm {algo!r} takes no {name!r} parameter; "
                               f"it takes {', '.join(takes) or 'none'}")
    # a tiny two-class mask: the algorithm validates the values itself
    probe = np.zeros((16, 16), np.uint8)
    probe[4:12, 4:12] = 1
    fn(probe, 2, np.random.default_rng(0), **params)
