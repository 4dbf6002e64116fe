"""Tests for engine.image_input: every input is generated in tmp_path."""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.errors import InputError
from engine.image_input import MAX_PIXELS, check_image, load_image

RED = (255, 0, 0)


def _assert_color(arr: np.ndarray, rgb: tuple[int, int, int], tol: int = 12) -> None:
    diff = np.abs(arr.astype(int) - np.array(rgb)).max()
    assert diff <= tol, f"max channel diff {diff} from {rgb}"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _write_png(path: Path, width: int, height: int, idat: bytes) -> None:
    """Hand-made 1-bit greyscale PNG, so huge headers cost nothing to create."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _assert_one_line_error(exc: pytest.ExceptionInfo[InputError], path: Path, *words: str):
    msg = str(exc.value)
    assert "\n" not in msg and "\r" not in msg
    assert str(path) in msg
    for w in words:
        assert w in msg, msg


# --- loading ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt,ext", [("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp")])
def test_solid_red_loads_red(tmp_path: Path, fmt: str, ext: str) -> None:
    p = tmp_path / f"red.{ext}"
    Image.new("RGB", (64, 48), RED).save(p, fmt)
    assert check_image(p) == (64, 48)
    out = load_image(p, (40, 24))
    assert out.shape == (24, 40, 3) and out.dtype == np.uint8
    _assert_color(out, RED)


def test_rgba_composited_on_white(tmp_path: Path) -> None:
    img = Image.new("RGBA", (40, 40), (0, 0, 0, 0))  # fully transparent black...
    img.paste((255, 0, 0, 255), (0, 0, 40, 20))  # ...with an opaque red top half
    p = tmp_path / "rgba.png"
    img.save(p)
    out = load_image(p, (40, 40))
    _assert_color(out[:16], RED)
    _assert_color(out[24:], (255, 255, 255))


def test_la_and_palette_with_transparency(tmp_path: Path) -> None:
    la = tmp_path / "la.png"
    Image.new("LA", (16, 16), (0, 0)).save(la)
    _assert_color(load_image(la, (8, 8)), (255, 255, 255))

    pal = Image.new("P", (16, 16), 1)
    pal.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    plain = tmp_path / "pal.png"
    pal.save(plain)
    _assert_color(load_image(plain, (8, 8)), (0, 0, 255))
    keyed = tmp_path / "pal_t.png"
    pal.save(keyed, transparency=1)  # index 1 transparent -> background
    _assert_color(load_image(keyed, (8, 8)), (255, 255, 255))


def test_palette_gif(tmp_path: Path) -> None:
    p = tmp_path / "red.gif"
    Image.new("RGB", (20, 10), RED).convert("P").save(p)
    _assert_color(load_image(p, (10, 10)), RED)


def test_16bit_grey_is_scaled_not_clipped(tmp_path: Path) -> None:
    p = tmp_path / "grey16.png"
    Image.fromarray(np.full((30, 20), 40000, dtype=np.uint16)).save(p)
    with Image.open(p) as im:
        assert im.mode.startswith("I")
    out = load_image(p, (20, 30))
    assert out.shape == (30, 20, 3)
    _assert_color(out, (156, 156, 156), tol=2)  # 40000 / 257


def test_cmyk_jpeg(tmp_path: Path) -> None:
    p = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(p, "JPEG")
    with Image.open(p) as im:
        assert im.mode == "CMYK"
    _assert_color(load_image(p, (16, 16)), RED, tol=20)


def test_bilevel_and_grey(tmp_path: Path) -> None:
    one = tmp_path / "one.png"
    Image.new("1", (8, 8), 1).save(one)
    _assert_color(load_image(one, (4, 4)), (255, 255, 255))
    grey = tmp_path / "grey.jpg"
    Image.new("L", (8, 8), 100).save(grey)
    _assert_color(load_image(grey, (4, 4)), (100, 100, 100), tol=3)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = Image.new("RGB", (80, 40), RED)
    stored.paste((0, 0, 255), (40, 0, 80, 40))  # stored: left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise
    p = tmp_path / "rot.jpg"
    stored.save(p, "JPEG", exif=exif.tobytes(), quality=95)

    assert check_image(p) == (40, 80)  # displayed size is portrait
    out = load_image(p, (40, 80))
    assert out.shape == (80, 40, 3)
    _assert_color(out[:30], RED, tol=20)  # left of stored is top after rotating clockwise
    _assert_color(out[50:], (0, 0, 255), tol=20)


def test_center_crop_keeps_aspect(tmp_path: Path) -> None:
    img = Image.new("RGB", (200, 100), RED)
    img.paste((0, 255, 0), (0, 0, 50, 100))  # side bars that the center crop must drop
    img.paste((0, 0, 255), (150, 0, 200, 100))
    p = tmp_path / "wide.png"
    img.save(p)
    out = load_image(p, (50, 50))
    assert out.shape == (50, 50, 3)
    _assert_color(out[:, 3:-3], RED, tol=20)


def test_big_jpeg_is_downscaled(tmp_path: Path) -> None:
    p = tmp_path / "big.jpg"
    Image.new("RGB", (3000, 2000), RED).save(p, "JPEG")
    out = load_image(p, (300, 200))
    assert out.shape == (200, 300, 3)
    _assert_color(out, RED)


def test_bad_size_argument(tmp_path: Path) -> None:
    p = tmp_path / "red.png"
    Image.new("RGB", (8, 8), RED).save(p)
    with pytest.raises(InputError):
        load_image(p, (0, 8))


# --- rejection -------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.png"
    with pytest.raises(InputError) as exc:
        check_image(p)
    _assert_one_line_error(exc, p, "image not found")
    with pytest.raises(InputError):
        load_image(p, (8, 8))
    with pytest.raises(InputError):
        check_image(tmp_path)  # a directory is not an image file


def test_text_file_named_png(tmp_path: Path) -> None:
    p = tmp_path / "notes.png"
    p.write_text("this is not a picture\nsecond line\n")
    with pytest.raises(InputError) as exc:
        check_image(p)
    _assert_one_line_error(exc, p, "image is not a readable picture")
    with pytest.raises(InputError):
        load_image(p, (8, 8))


def test_truncated_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    full = tmp_path / "full.png"
    Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(full)
    p = tmp_path / "cut.png"
    p.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(InputError) as exc:
        check_image(p)
    _assert_one_line_error(exc, p, "truncated")
    with pytest.raises(InputError):
        load_image(p, (8, 8))


def test_corrupt_jpeg(tmp_path: Path) -> None:
    full = tmp_path / "full.jpg"
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(full)
    data = full.read_bytes()
    for n in (400, len(data) // 2):  # inside the header, inside the scan data
        p = tmp_path / f"cut{n}.jpg"
        p.write_bytes(data[:n])
        with pytest.raises(InputError) as exc:
            check_image(p)
        _assert_one_line_error(exc, p)


def test_huge_png_rejected_fast(tmp_path: Path) -> None:
    # A real 20000x20000 1-bit PNG: 50 MB of zero rows compress to ~50 kB on disk.
    comp = zlib.compressobj(9)
    block = b"\0" * (1 + 20000 // 8) * 1000
    idat = b"".join(comp.compress(block) for _ in range(20)) + comp.flush()
    p = tmp_path / "bomb.png"
    _write_png(p, 20000, 20000, idat)
    assert p.stat().st_size < 200_000

    start = time.process_time()  # CPU seconds: time spent waiting on a busy machine is not ours
    with pytest.raises(InputError) as exc:
        check_image(p)
    with pytest.raises(InputError):
        load_image(p, (64, 64))
    assert time.process_time() - start < 1.0
    _assert_one_line_error(exc, p, "too large")


def test_over_our_limit_but_under_pillows(tmp_path: Path) -> None:
    # 8000x7000 = 56 Mpx: Pillow would open it silently, our MAX_PIXELS must not.
    assert MAX_PIXELS < 8000 * 7000 < Image.MAX_IMAGE_PIXELS
    p = tmp_path / "large.png"
    _write_png(p, 8000, 7000, zlib.compress(b"\0" * 1001))  # IDAT never gets read
    start = time.process_time()
    with pytest.raises(InputError) as exc:
        check_image(p)
    assert time.process_time() - start < 1.0
    _assert_one_line_error(exc, p, "too large", "8000x7000")


def test_eps_is_not_opened(tmp_path: Path) -> None:
    # EPS would be rendered by Ghostscript; it is not on the format allow-list.
    p = tmp_path / "x.eps"
    p.write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    with pytest.raises(InputError) as exc:
        check_image(p)
    _assert_one_line_error(exc, p, "not a readable picture")
