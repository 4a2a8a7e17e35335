"""Packaging that pyproject.toml cannot express: the top-level ``manifests/`` folder (the one source of
truth for class manifests and split files) ships inside the wheel as the package ``datakit.manifests``,
read through ``importlib.resources`` (``datakit.resources``). Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["datakit", "datakit.*", "train", "train.*"]), "datakit.manifests"],
    package_dir={"datakit.manifests": "manifests"},
)
