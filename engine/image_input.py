"""Load a user-supplied conditioning image (first frame / reference) as an RGB array.

Everything here is pure compute (Pillow + numpy). Validation is split so that a caller can
reject bad input up front with :func:`check_image` (header only plus one bounded decode)
before any expensive work is scheduled.

Choices worth knowing:

* Transparent images (RGBA, LA, PA, palette or grey with a transparency key) are composited
  onto **white**, so dark line art and logos with transparent backgrounds stay visible.
* 16-bit / 32-bit integer grey is scaled to 8 bit (``/257``), not clipped as Pillow's
  ``convert`` would do; float grey is taken as [0, 1] when its maximum is <= 1.
* Only common raster formats are opened (see ``_ALLOWED_FORMATS``), so e.g. EPS never runs
  Ghostscript on user input.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.errors import InputError, input_error, one_line

MAX_PIXELS = 50_000_000

# Common raster formats only: exotic plugins are rarely needed and some (EPS) shell out.
_ALLOWED_FORMATS = (
    "PNG",
    "JPEG",
    "WEBP",
    "GIF",
    "BMP",
    "DIB",
    "TIFF",
    "PPM",
    "TGA",
    "QOI",
    "AVIF",
    "JPEG2000",
)

_BACKGROUND = (255, 255, 255)  # transparent areas become white (see module docstring)

_EXIF_ORIENTATION = 0x0112
_SWAPS_AXES = {5, 6, 7, 8}  # EXIF orientations that rotate by 90 degrees


def _formats() -> tuple[str, ...]:
    Image.init()  # registers plugins; cheap after the first call
    return tuple(f for f in _ALLOWED_FORMATS if f in Image.OPEN)


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # broken EXIF must not make an otherwise fine picture unusable
        return 1


def _open_checked(path: str | Path, target: tuple[int, int] | None = None) -> Image.Image:
    """Open, check the header and fully decode. The caller owns (and closes) the image.

    ``target`` (displayed width, height) lets JPEG decode at a reduced DCT scale that still
    covers it, which makes big photos much cheaper to load.
    """
    p = Path(path)
    if not p.is_file():
        raise input_error("image not found", p)

    # Turn Pillow's bomb warning into an error; the hard limit is our own MAX_PIXELS check.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(p, formats=_formats())
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise input_error("image is too large", p, e) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise input_error("image is not a readable picture", p, e) from None

        try:
            w, h = img.size
            # Header-only check: nothing has been decoded or allocated yet.
            if w <= 0 or h <= 0:
                raise input_error("image has no pixels", p, f"{w}x{h}")
            if w * h > MAX_PIXELS:
                raise input_error("image is too large", p, f"{w}x{h} = {w * h} pixels > {MAX_PIXELS}")
            if target is not None:
                # draft works on stored axes; EXIF rotation may swap them for display.
                tw, th = target
                stored = (th, tw) if _orientation(img) in _SWAPS_AXES else (tw, th)
                img.draft(None, stored)
            try:
                img.load()
            except MemoryError:
                raise
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
                raise input_error("image is too large", p, e) from None
            except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, ...
                raise input_error("image is corrupt or truncated", p, e) from None
        except BaseException:
            img.close()
            raise
    return img


def check_image(path: str | Path) -> tuple[int, int]:
    """Validate an image file and return its displayed ``(width, height)``.

    The size is after EXIF orientation (a portrait phone photo stored landscape reports
    portrait). Raises :class:`InputError` with a one-line message on any problem.
    """
    with _open_checked(path) as img:
        w, h = img.size
        return (h, w) if _orientation(img) in _SWAPS_AXES else (w, h)


def _to_rgb(img: Image.Image, path: Path) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        # Pillow's convert clips high bit depths to 255 instead of scaling; do it by hand.
        a = np.asarray(img).astype(np.float64)
        if mode == "F":
            a = a * 255.0 if a.size and np.nanmax(a) <= 1.0 else a
        elif mode.startswith("I;16") or (a.size and a.max() > 255):
            a = a / 257.0
        grey = np.clip(np.nan_to_num(a), 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")

    has_alpha = mode in ("RGBA", "LA", "La", "RGBa", "PA") or "transparency" in img.info
    try:
        if has_alpha:
            rgba = img.convert("RGBA")
            bg = Image.new("RGBA", rgba.size, (*_BACKGROUND, 255))
            return Image.alpha_composite(bg, rgba).convert("RGB")
        return img.convert("RGB")  # P, 1, L, CMYK, YCbCr, RGBX, ...
    except ValueError as e:
        raise input_error("image has an unsupported color mode", path, f"{mode}: {e}") from None


def load_image(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """Load ``path`` as a uint8 RGB array of shape ``[height, width, 3]`` for ``size=(w, h)``.

    EXIF orientation is applied, colors are converted to RGB (alpha over white), and the
    picture is scaled to cover ``size`` and center-cropped so the aspect ratio is kept.
    """
    tw, th = (int(size[0]), int(size[1]))
    p = Path(path)
    if tw <= 0 or th <= 0:
        raise InputError(one_line(f"image size must be positive, got {size!r}: {p}"))

    with _open_checked(p, target=(tw, th)) as img:
        try:
            oriented = ImageOps.exif_transpose(img)
        except Exception:  # malformed EXIF: keep the stored orientation
            oriented = img
        rgb = _to_rgb(oriented, p)
        fitted = ImageOps.fit(rgb, (tw, th), method=Image.Resampling.LANCZOS)
        out = np.asarray(fitted, dtype=np.uint8)
    assert out.shape == (th, tw, 3), out.shape
    return np.ascontiguousarray(out)
