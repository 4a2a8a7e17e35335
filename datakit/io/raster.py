"""2D raster files: PNG, JPEG, TIFF, BMP (PIL, tifffile), every header checked before decoding.

:func:`read_array` reads an image or label file as stored (the folder source); :func:`header_mode`
reads only its header; :func:`load_png` reads a frame as grey levels (the Unity source).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datakit.errors import DatakitError
from datakit.safe_io import check_decoded_size, check_finite, regular_file


def read_array(path: Path, labels: bool = False) -> np.ndarray:
    """(H, W) or (H, W, 3) array of an image file in its stored dtype; a palette image gives its
    colours, or its palette indices when read as ``labels`` (indexed label maps)."""
    regular_file(path, "image")  # a FIFO would block the decoder forever
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tf:
                series = tf.series[0] if tf.series else None
                if series is not None:  # the header's promise, checked before anything is decoded
                    check_decoded_size(tuple(series.shape), np.dtype(series.dtype).itemsize, path)
                a = tf.asarray()
        else:
            from PIL import Image

            with Image.open(path) as im:
                check_decoded_size((im.size[1], im.size[0], len(im.getbands())), 4, path)
                if im.mode in ("CMYK", "YCbCr") or (im.mode == "P" and not labels):
                    im = im.convert("RGB")
                a = np.asarray(im)
    except DatakitError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file, named
        raise DatakitError(f"cannot read image ({type(e).__name__}: {e})", path) from None
    if a.dtype.kind == "c":
        raise DatakitError(f"complex pixels ({a.dtype}); refused", path)
    check_finite(a, path)
    if a.dtype == bool:  # 1-bit files: a mask's classes 0/1, an image's black/white
        a = a.astype(np.uint8) * (1 if labels else 255)
    a = np.squeeze(a) if a.ndim > 2 and 1 in a.shape[:2] else a
    if a.ndim == 3 and a.shape[0] in (3, 4) and a.shape[2] not in (3, 4):  # planar TIFF (C, H, W)
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3 and a.shape[2] in (2, 4):  # grey+alpha or RGBA: alpha is not an image channel
        a = a[..., :-1]
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
        raise DatakitError(f"expected a 2D grey or RGB image, found shape {a.shape}", path)
    return a


def is_colour(a: np.ndarray) -> bool:
    """RGB with channels that differ (a grey image saved as RGB is grey)."""
    return a.ndim == 3 and not (np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2]))


def header_mode(path: Path) -> tuple[int, bool]:
    """(channels as coded, 8-bit) from the file header only: cheap enough to scan every file up front."""
    regular_file(path, "image")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tf:
                page = tf.pages[0]
                samples = int(getattr(page, "samplesperpixel", 1))
                return (3 if samples >= 3 else 1), np.dtype(page.dtype) == np.uint8
        from PIL import Image

        with Image.open(path) as im:
            return (3 if im.mode in ("RGB", "RGBA", "CMYK", "YCbCr", "P") else 1), im.mode not in ("I;16", "I",
                                                                                               "F", "I;16B")
    except Exception as e:  # noqa: BLE001
        raise DatakitError(f"cannot read image header ({type(e).__name__}: {e})", path) from None


def load_png(path: Path) -> np.ndarray:
    """(H, W) float32 grey levels: colour frames (overlays, RGB exports) are converted to luma."""
    from PIL import Image

    regular_file(path, "image")  # a FIFO would block the decoder forever
    try:
        with Image.open(path) as im:
            check_decoded_size((im.size[1], im.size[0], len(im.getbands())), 4, path)  # before decoding
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                return np.asarray(im, np.float32)
            return np.asarray(im.convert("L"), np.float32)
    except FileNotFoundError:
        raise DatakitError("image not found", path) from None
    except DatakitError:
        raise
    except Exception as e:  # noqa: BLE001 - PIL raises many types (DecompressionBombError, SyntaxError, ...)
        raise DatakitError(f"cannot read PNG ({type(e).__name__}: {e})", path) from None
