"""Files that ship with datakit, read through ``importlib.resources`` so that they are found in an
installed wheel as in a checkout: the class manifests and split files of the top-level ``manifests/``
folder, installed as the package ``datakit.manifests`` (setup.py maps the folder; no second copy)."""

from __future__ import annotations

import json
from importlib.resources import files
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # importlib.resources.abc is Python 3.11+
    from importlib.resources.abc import Traversable

MANIFESTS = "datakit.manifests"


def manifest(name: str) -> Traversable:
    """A file of ``manifests/`` (e.g. ``"acdc.json"``), wherever datakit is installed."""
    return files(MANIFESTS).joinpath(name)


def read_manifest(name: str) -> Any:
    """A JSON manifest, parsed."""
    return json.loads(manifest(name).read_text(encoding="utf-8"))
