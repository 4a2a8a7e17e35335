"""The one list of sources: name -> source class, its own command-line options and its capabilities.

The CLI builds every ``convert`` (and ``splines-to-masks``) command and every ``synth`` command from
this list the same way (:mod:`datakit.cli.convert`): the options all converters share are defined
once there, a source adds only its own here. Adding a source is one :class:`SourceSpec` below
(docs/adding-a-source.md).

This module must stay light (typer only): it is read for ``datakit --help``. The source class and
its phantom writer are named as ``"module:attribute"`` and imported only when a command runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import typer

from datakit.choices import (
    CAMUS_FORMATS,
    CAMUS_FRAMES,
    CAMUS_RELEASES,
    FOLDER_CHANNELS,
    FOLDER_NORMALIZATIONS,
    NORMALIZATIONS,
    UNITY_OFF_AS,
)
from datakit.constants import MIN_IMAGE_SIZE


class _Shared:
    """Default of an options-function parameter that takes the value of the shared option of that name
    (e.g. ``split``) instead of declaring an option of its own."""

    def __repr__(self) -> str:
        return "SHARED"


SHARED: Any = _Shared()

SCRIBBLE_MODES = ("auto", "none", "folder", "synth")


@dataclass(frozen=True)
class SourceSpec:
    """One source as the CLI and the pipeline see it.

    ``options`` is a function whose parameters are the source's own Typer options (and, with the
    default :data:`SHARED`, shared options it needs to see, e.g. ``split``); it returns the keyword
    arguments of the source class (it may raise DatakitError for a bad combination).
    """

    name: str
    source: str  # "module:Class", the Source implementation
    options: Callable[..., dict[str, Any]]
    summary: str  # the command's help
    src_help: str
    scribble_modes: tuple[str, ...] = ("none", "synth")  # of SCRIBBLE_MODES; "auto"/"folder": scribble files
    scribbles_default: str = "none"
    scribbles_help: str = "none, or synth:ALGO (scribbles drawn from the masks: skeleton, randomwalk, wsl4mis)."
    split_default: str | None = None  # None: the source's default_split()
    split_help: str = "random, kfold:K/FOLD or file:PATH."
    on_error_help: str | None = None  # None: the shared help
    group: str = "convert"  # the command group: convert, or splines-to-masks for curve-labelled data
    passes: tuple[str, ...] = ()  # shared options also given to the source class (e.g. on_error)
    synth: Callable[..., str] | None = None  # writes phantoms, returns the line to print
    synth_summary: str = ""
    synth_out_help: str = "Folder to create."

    def source_class(self) -> type:
        from importlib import import_module

        module, attr = self.source.split(":")
        return getattr(import_module(module), attr)


def size_option(default: int, help: str = "Stored image size (square), pixels.") -> Any:
    return typer.Option(default, "--size", help=help, min=MIN_IMAGE_SIZE)


# ---- ACDC ----------------------------------------------------------------------------------------


def _acdc_options(
    spacing: float = typer.Option(1.51, help="In-plane pixel spacing of the store, mm."),
    size: int = size_option(224),
    norm: Literal[NORMALIZATIONS] = typer.Option(
        "percentile-iqr", help="Per-volume intensity normalisation: percentile-iqr (clip 5th-95th percentile, "
        "(x - median) / IQR), zscore, minmax (to 0-1), scale255 (x / 255, for 8-bit intensities), none."),
) -> dict[str, Any]:
    return {"spacing": spacing, "size": size, "norm": norm}


def _acdc_synth(
    out: Path, seed: int, overwrite: bool,
    patients: int = typer.Option(10, help="Number of patients.", min=1, max=999),
    cine: bool = typer.Option(True, "--cine/--no-cine", show_default=False,
                              help="Also write the 4D cine (slower); on unless --no-cine."),
) -> str:
    from datakit.synth.acdc import write_acdc_phantoms

    paths = write_acdc_phantoms(out, patients=patients, seed=seed, overwrite=overwrite, cine=cine)
    return f"wrote {len(paths)} ACDC phantom patients to {out}"


# ---- CAMUS ---------------------------------------------------------------------------------------


def _camus_options(
    format: Literal[CAMUS_FORMATS] = typer.Option("auto", "--format", help="auto (from the files), nifti or mhd."),
    views: str = typer.Option("2CH,4CH", help="Views to convert, comma-separated."),
    frames: Literal[CAMUS_FRAMES] = typer.Option(
        "ed-es", help="ed-es: the ED and ES frames with their masks; sequence: every frame of the (half) "
        "sequence, masks 255 where no ground truth."),
    size: int = size_option(256),
    norm: Literal[NORMALIZATIONS] = typer.Option("zscore", help="Per-image intensity normalisation: zscore, "
                                                 "minmax, scale255 (x / 255), percentile-iqr, none."),
    fold: int = typer.Option(None, help="Fold of listSubGroups/ (1-10) for --split official.", min=1),
    split: str | None = SHARED,
) -> dict[str, Any]:
    from datakit.errors import DatakitError

    if fold is not None and split not in (None, "official"):
        raise DatakitError(f"--fold selects an official fold; it does not apply to --split {split}")
    return {"format": format, "views": views, "frames": frames, "size": size, "norm": norm, "fold": fold}


def _camus_synth(
    out: Path, seed: int, overwrite: bool,
    release: Literal[CAMUS_RELEASES] = typer.Option(
        "nifti", help="nifti (database_nifti/, database_split/, half sequences) or mhd (training/, testing/, "
        "listSubGroups/, .mhd + .raw, full sequences)."),
    patients: int = typer.Option(10, help="Number of patients.", min=1, max=9999),
    row_spacing: float = typer.Option(0.154, help="Row spacing in mm (columns about twice): 0.154 gives "
                                      "about 800 x 550 pixel images; larger values give smaller, faster files.",
                                      min=0.01),
) -> str:
    from datakit.progress import progress_bar
    from datakit.synth.camus import write_camus_phantoms

    with progress_bar() as bar:  # on a terminal only, as convert's
        task = bar.add_task("writing CAMUS phantoms", total=patients)
        paths = write_camus_phantoms(out, patients=patients, release=release, seed=seed, overwrite=overwrite,
                                     row_spacing=row_spacing, progress=lambda n: bar.advance(task, n))
    return f"wrote {len(paths)} CAMUS phantom patients ({release} release) to {out}"


# ---- generic image/mask folders ------------------------------------------------------------------


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [c.strip() for c in text.split(",") if c.strip()]


def _ints(text: str | None) -> list[int] | None:
    from datakit.errors import DatakitError

    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise DatakitError(f"--mask-values must be comma-separated integers, not {text!r}") from None


def _folder_options(
    classes: str = typer.Option(None, help="Class names by label value, e.g. background,polyp "
                                "(default background,foreground)."),
    mask_suffix: str = typer.Option("", help="Mask name = image name + this, e.g. _mask for X_mask.tif."),
    images_dir: str = typer.Option("images", help="Name of the images sub-folder (e.g. CXR_png)."),
    masks_dir: str = typer.Option("masks", help="Name of the masks sub-folder."),
    binarize: float = typer.Option(None, help="Mask value > T is foreground (JPEG masks: 127)."),
    mask_values: str = typer.Option(None, help="Grey levels of the classes in order, e.g. 0,64,128,255; "
                                    "any other value is an error."),
    size: int = size_option(256, "Stored image size (square); aspect kept, padded."),
    norm: Literal[FOLDER_NORMALIZATIONS] = typer.Option(
        "auto", help="Per-image normalisation: auto (scale255 for 8-bit images, else percentile-iqr), "
        "percentile-iqr, zscore, minmax, scale255, none."),
    channels: Literal[FOLDER_CHANNELS] = typer.Option(
        "auto", help="auto (3 if any image is colour), 1 (colour to luminance), 3."),
    patient_regex: str = typer.Option(None, help="Regex on the file's relative path giving the subject id "
                                      "(group 'patient', else group 1, else the match), e.g. 'TCGA_\\w+_\\w+'. "
                                      "Default: each file is its own subject."),
    name: str = typer.Option(None, help="Dataset name (meta/dataset = folder:NAME; default the folder name)."),
) -> dict[str, Any]:
    return {"classes": _names(classes), "mask_suffix": mask_suffix, "images_dir": images_dir,
            "masks_dir": masks_dir, "binarize": binarize, "mask_values": _ints(mask_values), "size": size,
            "norm": norm, "channels_opt": channels, "patient_regex": patient_regex, "name": name}


# ---- Unity Imaging -------------------------------------------------------------------------------


def _unity_options(
    labels: Path = typer.Option(None, "--labels", help="Labels JSON to convert (default SRC/labels-all.json, "
                                "else SRC/labels/labels-all.json; a relative name is looked up in SRC). "
                                "Split files are looked for beside it, then in SRC."),
    classes: Path = typer.Option(None, "--classes", help="Class manifest: classes, curve rules "
                                 "(fill/line/between), points (default manifests/unity_classes.json)."),
    size: int = size_option(256, "Stored image size (square, aspect kept by padding), pixels."),
    norm: Literal[NORMALIZATIONS] = typer.Option("scale255", help="Per-image intensity normalisation: scale255 "
                                                 "(x / 255), percentile-iqr, zscore, minmax, none."),
    off_as: Literal[UNITY_OFF_AS] = typer.Option(
        "absent", "--off-as", help="What an 'off' label means: absent (label state 0, as Unity's own training "
        "code reads it) or unknown (-1: Unity also writes 'off' for labels the frame's annotation project never "
        "asked for)."),
) -> dict[str, Any]:
    return {"labels": labels, "classes_file": classes, "size": size, "norm": norm, "off_as": off_as}


def _unity_synth(
    out: Path, seed: int, overwrite: bool,
    videos: int = typer.Option(6, help="Number of videos (the last two are tune and ival).", min=1, max=999),
    frames: int = typer.Option(3, help="Labelled frames per video.", min=1, max=999),
) -> str:
    from datakit.synth.unity import write_unity_phantoms

    paths = write_unity_phantoms(out, videos=videos, frames=frames, seed=seed, overwrite=overwrite)
    return f"wrote {len(paths)} frames of {videos} Unity phantom videos to {out}"


# ---- the registry --------------------------------------------------------------------------------

SOURCES: dict[str, SourceSpec] = {s.name: s for s in (
    SourceSpec(
        "acdc", "datakit.sources.acdc:AcdcSource", _acdc_options,
        summary="ACDC cine MRI: ED/ES frames, `_gt` masks, Valvano scribbles, Info.cfg.",
        src_help="ACDC root, its training/ folder, or a folder of patient folders.",
        scribble_modes=("auto", "none", "folder", "synth"), scribbles_default="auto",
        scribbles_help="auto (manual *_scribble.nii.gz beside the frames), none, a folder of scribble files, "
                       "or synth:ALGO (skeleton, randomwalk, wsl4mis).",
        split_default="stratified",
        split_help="stratified[:column] (by Group), random, kfold:K/FOLD, or file:PATH (JSON split name -> "
                   "patient ids).",
        synth=_acdc_synth, synth_summary="ACDC phantoms: Info.cfg, 4D cine, ED/ES frames, `_gt` masks, "
                                         "Valvano-format scribbles.",
        synth_out_help="Folder to create (the ACDC root: training/patientXXX/)."),
    SourceSpec(
        "camus", "datakit.sources.camus:CamusSource", _camus_options,
        summary="CAMUS 2D echo: 2CH/4CH ED/ES frames or sequences, LV/MYO/LA masks, Info cfg, official splits.",
        src_help="CAMUS release root, database_nifti/, the MHD release root (training/, testing/), or a "
                 "folder of patient folders.",
        split_help="official (default when database_split/ or listSubGroups/ exist), stratified[:column] "
                   "(default: image_quality), random, kfold:K/FOLD, file:PATH.",
        synth=_camus_synth, synth_summary="CAMUS phantoms: echo fans with speckle, LV/MYO/LA masks, Info cfg "
                                          "files, split lists.",
        synth_out_help="Folder to create (the release root)."),
    SourceSpec(
        "folder", "datakit.sources.folder:FolderSource", _folder_options,
        summary="Generic image/mask folders: PNG, JPEG, TIFF, BMP; grey or RGB; pairs matched by name.",
        src_help="Folder with images/ and masks/ (optionally under train/ valid/ test/), or images with "
                 "masks beside them (--mask-suffix).",
        scribbles_help="none, or synth:ALGO (scribbles drawn from the masks).",
        split_help="official (train/ valid/ test/ sub-folders; the default when present), random (the "
                   "default otherwise), kfold:K/FOLD, file:PATH."),
    SourceSpec(
        "unity", "datakit.sources.unity:UnitySource", _unity_options,
        group="splines-to-masks", passes=("on_error",),
        summary="Unity Imaging echo: PNG frames + curve/point labels -> masks, label states, keypoints.",
        src_help="Unity root: png-cache/ and the labels JSON files.",
        scribble_modes=("auto", "none", "synth"),  # auto: none (Unity ships no scribbles)
        scribbles_help="none, or synth:ALGO to draw scribbles from the masks.",
        split_help="official (labels-train/tune/ival -> train/valid/test; the default when those files exist, "
                   "else random), random, kfold:K/FOLD or file:PATH.",
        on_error_help="stop: exit 1 on the first problem; skip: leave out a bad frame (bad key, missing image) "
                      "or a malformed label (the frame is kept, its class unknown), record why. Degenerate "
                      "labels (2 points, NaN) never stop: drawn as segments or left unknown, and listed.",
        synth=_unity_synth, synth_summary="Unity phantoms: echo-like PNGs in png-cache/, spline labels in both "
                                          "JSON variants, splits.",
        synth_out_help="Folder to create (the Unity root: png-cache/, labels-*.json)."),
)}
