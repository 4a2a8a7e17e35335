"""Every fixed set of values that a ``train`` option takes outside TrainConfig, named once (as
datakit/choices.py for datakit).

The command line declares these as ``Literal`` types, so ``--help`` lists them and Click refuses any
other value naming them (exit 2); the modules that implement them import the same tuples to check
values given through the Python API. No imports: ``train --help`` reads this module.
"""

from __future__ import annotations

DEVICES = ("auto", "cpu", "cuda")  # train.loop.pick_device (auto: cuda when available)
POSTPROCESS = ("auto", "none", "lcc")  # train.postprocess.resolve
PREDICT_FORMATS = ("auto", "png", "nifti")  # train.predict_io
GRIDS = ("source", "stored")  # train.predict_io: the grid NIfTI predictions are written on
SCORES = ("auto", "raw", "postprocessed")  # train.compare.load_runs
