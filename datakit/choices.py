"""Every fixed set of values that a datakit option takes, named once.

The command line declares these as ``Literal`` types, so ``--help`` lists them and Click refuses any
other value naming them (exit 2); the modules that implement them import the same tuples to check
values given through the Python API. No imports: ``datakit --help`` reads this module.
"""

from __future__ import annotations

# shared by every converter
NORMALIZATIONS = ("percentile-iqr", "zscore", "minmax", "scale255", "none")  # datakit.normalize
ON_ERROR = ("stop", "skip")  # datakit.pipeline: stop at the first bad patient, or skip it and record why
IMAGE_DTYPES = ("float32", "float16")  # datakit.store.chunks.ImageFormat
IMAGE_COMPRESSIONS = ("none", "gzip")  # datakit.store.chunks.ImageFormat
SCRIBBLE_ALGORITHMS = ("skeleton", "randomwalk", "wsl4mis")  # the modules of datakit.scribbles

# datakit export nnunet (datakit.export.nnunet)
EXPORT_LABELS = ("masks", "scribbles")
EXPORT_FORMATS = ("auto", "nifti", "png")

# source options (datakit.sources.*, datakit.synth.*)
CAMUS_FORMATS = ("auto", "nifti", "mhd")  # auto: told apart by the files
CAMUS_FRAMES = ("ed-es", "sequence")
CAMUS_RELEASES = ("nifti", "mhd")  # datakit synth camus --release
FOLDER_NORMALIZATIONS = ("auto", *NORMALIZATIONS)  # auto: scale255 for 8-bit images, else percentile-iqr
FOLDER_CHANNELS = ("auto", "1", "3")
UNITY_OFF_AS = ("absent", "unknown")
