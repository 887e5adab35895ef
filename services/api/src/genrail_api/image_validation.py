"""Check an uploaded image by its content, never by its filename or declared content type.

JPEG, PNG and WebP are accepted (what OpenAI's image edits take). The format is read from
the file's signature and only that format's Pillow decoder is allowed to open it; the pixel
limit is checked from the header before anything is decoded, so a small file declaring huge
dimensions (a decompression bomb) is refused without allocating its pixels. Pure: no I/O.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

from PIL import Image

ImageFormat = Literal["jpeg", "png", "webp"]

ACCEPTED_FORMATS = "JPEG, PNG or WebP"
_PILLOW_FORMAT: dict[ImageFormat, str] = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}
_DISPLAY_NAME: dict[ImageFormat, str] = {"jpeg": "JPEG", "png": "PNG", "webp": "WebP"}
_CONTENT_TYPE: dict[ImageFormat, str] = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
_EXIF_ORIENTATION = 0x0112
_ORIENTATIONS_TURNED_SIDEWAYS = {5, 6, 7, 8}
_BMP_INFO_HEADER_SIZES = {12, 40, 52, 56, 108, 124}  # "BM" alone could be the start of any text


@dataclass(frozen=True)
class ImageInfo:
    format: ImageFormat
    content_type: str
    width: int  # as displayed, after any EXIF rotation
    height: int
    size_bytes: int


class InvalidImage(ValueError):
    """The upload is not an acceptable image; `message` is written for the person uploading."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def validate_image(data: bytes, *, max_bytes: int, max_pixels: int) -> ImageInfo:
    """The image's format and size, or InvalidImage saying what is wrong with it."""
    if not data:
        raise InvalidImage("The file is empty.")
    if len(data) > max_bytes:
        raise InvalidImage(_size_comparison(len(data), max_bytes))

    image_format = _sniff(data)
    if image_format is None:
        other = _unsupported_kind(data)
        if other:
            raise InvalidImage(f"{other} files are not accepted; upload a {ACCEPTED_FORMATS} image.")
        raise InvalidImage("The file is not an image in a supported format; "
                           f"upload a {ACCEPTED_FORMATS} image.")
    name = _DISPLAY_NAME[image_format]
    too_many_pixels = f"limit is {max_pixels:,} pixels (about {max_pixels / 1e6:g} megapixels)"

    try:
        with Image.open(io.BytesIO(data), formats=[_PILLOW_FORMAT[image_format]]) as header:
            width, height = header.size
            # JPEG cannot animate; its multi-picture (MPO) variant only carries previews.
            animated = image_format != "jpeg" and (getattr(header, "is_animated", False)
                                                   or getattr(header, "n_frames", 1) > 1)
            orientation = header.getexif().get(_EXIF_ORIENTATION) if image_format != "png" else None
    except Image.DecompressionBombError:  # Pillow's own, far higher, ceiling tripped first
        raise InvalidImage(f"The image has too many pixels; the {too_many_pixels}.") from None
    except Exception as exc:  # Pillow raises many exception types on hostile headers
        raise InvalidImage(f"The {name} file is corrupt: its header cannot be read.") from exc

    if width < 1 or height < 1:
        raise InvalidImage(f"The {name} image declares no pixels ({width}x{height}).")
    if width * height > max_pixels:
        raise InvalidImage(f"The image is {width}x{height} ({width * height:,} pixels); "
                           f"the {too_many_pixels}.")
    if animated:
        raise InvalidImage(f"Animated {name} images are not accepted: edits work on a single still "
                           "image, and keeping only the first frame could silently lose what you meant; "
                           "upload one frame.")

    try:
        with Image.open(io.BytesIO(data), formats=[_PILLOW_FORMAT[image_format]]) as checked:
            checked.verify()  # structure and checksums; leaves the image unusable, hence a second open
        with Image.open(io.BytesIO(data), formats=[_PILLOW_FORMAT[image_format]]) as decoded:
            decoded.load()  # decodes every pixel: catches truncation verify() cannot see
    except Exception as exc:  # as above: any decoder failure means the file cannot be used
        raise InvalidImage(f"The {name} file is truncated or corrupt and cannot be decoded.") from exc

    if orientation in _ORIENTATIONS_TURNED_SIDEWAYS:
        width, height = height, width
    return ImageInfo(format=image_format, content_type=_CONTENT_TYPE[image_format], width=width,
                     height=height, size_bytes=len(data))


def _sniff(data: bytes) -> ImageFormat | None:
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def _unsupported_kind(data: bytes) -> str | None:
    """Name common files we refuse, so the message can say what was uploaded."""
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:2] == b"BM" and int.from_bytes(data[14:18], "little") in _BMP_INFO_HEADER_SIZES:
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1"):
            return "HEIC/HEIF"
        return "Video"
    if data.startswith(b"%PDF"):
        return "PDF"
    head = data[:512].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "SVG"
    return None


def _human_bytes(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    if size < 1024**2:
        return f"{size / 1024:.1f} KB"
    return f"{size / 1024**2:.1f} MB"


def _size_comparison(size: int, limit: int) -> str:
    shown, allowed = _human_bytes(size), _human_bytes(limit)
    if shown == allowed:  # just over the limit: rounding would hide the difference
        shown, allowed = f"{size:,} bytes", f"{limit:,} bytes"
    return f"The file is {shown}; the limit is {allowed}."

