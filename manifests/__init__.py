"""Class manifests and split files; installed as the package ``datakit.manifests`` (see setup.py)."""
