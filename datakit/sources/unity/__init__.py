"""Unity Imaging echo (spline-labelled PNG frames): the source and the modules only it uses.

- :mod:`.source`: :class:`UnitySource` (labels JSON, png-cache/, splits, label states);
- :mod:`.splines`: curves and points to masks and keypoints (``render_labels``, ``PixelTransform``);
- :mod:`.classes`: the class manifest (``manifests/unity_classes.json``: classes, curve rules, points).
"""

from datakit.sources.unity.source import UnitySource

__all__ = ["UnitySource"]
