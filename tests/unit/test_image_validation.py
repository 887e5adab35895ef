"""Uploaded images are judged by their bytes: format, integrity, size and pixel count."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from genrail_api.image_validation import ImageInfo, InvalidImage, validate_image

LIMITS = {"max_bytes": 5 * 1024 * 1024, "max_pixels": 4_000_000}


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def photo(size: tuple[int, int] = (64, 48)) -> Image.Image:
    return Image.radial_gradient("L").resize(size).convert("RGB")


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_declaring(width: int, height: int) -> bytes:
    """A valid-looking PNG of a few dozen bytes whose header claims width x height pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + png_chunk(b"IEND", b""))


@pytest.mark.parametrize(("fmt", "name", "content_type"), [
    ("JPEG", "jpeg", "image/jpeg"), ("PNG", "png", "image/png"), ("WEBP", "webp", "image/webp"),
])
def test_accepts_jpeg_png_and_webp(fmt: str, name: str, content_type: str) -> None:
    data = encode(photo((64, 48)), fmt)
    assert validate_image(data, **LIMITS) == ImageInfo(format=name, content_type=content_type, width=64,
                                                       height=48, size_bytes=len(data))


def test_reports_displayed_dimensions_for_a_sideways_jpeg() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    info = validate_image(encode(photo((64, 48)), "JPEG", exif=exif.tobytes()), **LIMITS)
    assert (info.width, info.height) == (48, 64)


def test_empty_file() -> None:
    with pytest.raises(InvalidImage, match="empty"):
        validate_image(b"", **LIMITS)


def test_too_many_bytes_is_refused_before_decoding() -> None:
    data = encode(photo((256, 256)), "PNG")
    with pytest.raises(InvalidImage, match=r"the limit is 1\.0 KB"):
        validate_image(data, max_bytes=1024, max_pixels=10**6)


def test_a_text_file_is_not_an_image_whatever_it_is_called() -> None:
    with pytest.raises(InvalidImage, match="JPEG, PNG or WebP") as raised:
        validate_image(b"name,amount\nalice,10\n", **LIMITS)
    assert "not an image" in raised.value.message


def test_gif_is_named_and_refused() -> None:
    with pytest.raises(InvalidImage, match="GIF files are not accepted; upload a JPEG, PNG or WebP image"):
        validate_image(encode(photo(), "GIF"), **LIMITS)


def test_truncated_png_is_refused() -> None:
    data = encode(photo((64, 48)), "PNG")
    with pytest.raises(InvalidImage, match="PNG file is truncated or corrupt"):
        validate_image(data[: len(data) // 2], **LIMITS)


def test_truncated_jpeg_is_refused() -> None:
    data = encode(photo((256, 256)), "JPEG")
    with pytest.raises(InvalidImage, match="JPEG file is truncated or corrupt"):
        validate_image(data[: len(data) // 2], **LIMITS)


def test_png_with_a_bad_checksum_is_refused() -> None:
    data = bytearray(encode(photo((64, 48)), "PNG"))
    data[45] ^= 0xFF  # inside the first IDAT payload, so only its CRC gives it away
    with pytest.raises(InvalidImage, match="corrupt"):
        validate_image(bytes(data), **LIMITS)


def test_a_tiny_file_declaring_many_pixels_is_refused_before_decoding() -> None:
    bomb = png_declaring(3000, 3000)
    assert len(bomb) < 100
    with pytest.raises(InvalidImage, match=r"3000x3000 \(9,000,000 pixels\); the limit is 4,000,000"):
        validate_image(bomb, **LIMITS)


def test_a_bomb_beyond_pillows_own_ceiling_gets_the_same_message() -> None:
    with pytest.raises(InvalidImage, match="too many pixels"):
        validate_image(png_declaring(100_000, 100_000), **LIMITS)


def test_animated_images_are_refused_with_the_reason() -> None:
    frames = [Image.new("RGB", (32, 32), colour) for colour in ("red", "blue")]
    animated = encode(frames[0], "PNG", save_all=True, append_images=frames[1:])
    with pytest.raises(InvalidImage, match="Animated PNG images are not accepted: edits work on a single"):
        validate_image(animated, **LIMITS)
