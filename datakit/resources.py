"""Files that ship with datakit, read through ``importlib.resources`` so that they are found in an
installed wheel as in a checkout: the class manifests and split files of the top-level ``manifests/``
folder, installed as the package ``datakit.manifests`` (setup.py maps the folder; no second copy)."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # importlib.resources.abc is Python 3.11+
    from importlib.resources.abc import Traversable

MANIFESTS = "datakit.manifests"


def manifest(name: str) -> Traversable:
    """A file of ``manifests/`` (e.g. ``"acdc.json"``), wherever datakit is installed."""
    try:
        root: Traversable | Path = files(MANIFESTS)
    except ModuleNotFoundError:
        # a checkout whose editable install predates the mapping (re-run `make install`): its own folder
        root = Path(__file__).resolve().parents[1] / "manifests"
        if not root.is_dir():
            raise
    return root.joinpath(name)


def read_manifest(name: str) -> Any:
    """A JSON manifest, parsed."""
    return json.loads(manifest(name).read_text(encoding="utf-8"))
