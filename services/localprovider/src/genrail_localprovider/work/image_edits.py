"""Real, deterministic image edits driven by a plain-English prompt, done with Pillow.

The local provider answers OpenAI's `images/edits` protocol with this, so the whole batch
image-editing path does real work on one machine without keys. A prompt such as
"make it black and white, rotate 90 and add caption 'Summer sale'" becomes a list of
operations; the same image and prompt always give the same bytes.

Operations run in the order the prompt names them, except captions, which are drawn last so
that no later rotation, crop or resize turns or cuts them. Metadata (EXIF, including any
location) is not carried into the output.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

INPUT_FORMATS = ("PNG", "JPEG", "WEBP")
MAX_INPUT_PIXELS = 50_000_000
MAX_OUTPUT_SIDE = 4096
MAX_CAPTION_CHARS = 200

SUPPORTED_EDITS = (
    "black and white (grayscale)",
    "sepia",
    "blur [by N px]",
    "sharpen",
    "brighten / darken [by N%]",
    "increase / reduce contrast [by N%]",
    "invert colours",
    "rotate [N degrees] [clockwise | counter-clockwise]",
    "mirror / flip [horizontally | vertically]",
    "crop to a ratio such as 1:1, 16:9 or 4:5 (or 'crop square')",
    "resize to WxH",
    "add caption \"your text\" (in quotes)",
)


class UnsupportedPrompt(ValueError):
    """The prompt asks for no edit this editor can do, or for one with impossible values."""


class InvalidInputImage(ValueError):
    """The bytes to edit are not a PNG, JPEG or WebP image Pillow can decode within limits."""


# --- Operations: each takes and returns an RGB or RGBA image. ---------------------------------


def _on_colour_channels(image: Image.Image, edit: Callable[[Image.Image], Image.Image]) -> Image.Image:
    """Apply a colour edit to RGB only, so transparency is never lightened, darkened or inverted."""
    if image.mode != "RGBA":
        return edit(image)
    edited = edit(image.convert("RGB")).convert("RGB")
    edited.putalpha(image.getchannel("A"))
    return edited


@dataclass(frozen=True)
class Grayscale:
    def apply(self, image: Image.Image) -> Image.Image:
        return _on_colour_channels(image, lambda rgb: ImageOps.grayscale(rgb).convert("RGB"))


# The classic sepia tone matrix (rows give R, G, B from r, g, b, offset); values clip at 255.
_SEPIA_MATRIX = (0.393, 0.769, 0.189, 0.0, 0.349, 0.686, 0.168, 0.0, 0.272, 0.534, 0.131, 0.0)


@dataclass(frozen=True)
class Sepia:
    def apply(self, image: Image.Image) -> Image.Image:
        return _on_colour_channels(image, lambda rgb: rgb.convert("RGB", _SEPIA_MATRIX))


@dataclass(frozen=True)
class Blur:
    radius: float = 4.0

    def apply(self, image: Image.Image) -> Image.Image:
        return image.filter(ImageFilter.GaussianBlur(self.radius))


@dataclass(frozen=True)
class Sharpen:
    def apply(self, image: Image.Image) -> Image.Image:
        unsharp = ImageFilter.UnsharpMask(radius=2, percent=150, threshold=2)
        return _on_colour_channels(image, lambda rgb: rgb.filter(unsharp))


@dataclass(frozen=True)
class Brightness:
    factor: float  # 1.3 is 30% brighter, 0.7 is 30% darker

    def apply(self, image: Image.Image) -> Image.Image:
        return _on_colour_channels(image, lambda rgb: ImageEnhance.Brightness(rgb).enhance(self.factor))


@dataclass(frozen=True)
class Contrast:
    factor: float  # above 1 increases contrast, below 1 reduces it

    def apply(self, image: Image.Image) -> Image.Image:
        return _on_colour_channels(image, lambda rgb: ImageEnhance.Contrast(rgb).enhance(self.factor))


@dataclass(frozen=True)
class Invert:
    def apply(self, image: Image.Image) -> Image.Image:
        return _on_colour_channels(image, ImageOps.invert)


# Clockwise quarter turns; Pillow's ROTATE_* constants turn counter-clockwise.
_EXACT_TURNS = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180,
                270: Image.Transpose.ROTATE_90}


@dataclass(frozen=True)
class Rotate:
    degrees: float  # clockwise, as photo apps turn "rotate right"

    def apply(self, image: Image.Image) -> Image.Image:
        turn = self.degrees % 360
        if turn == 0:
            return image
        if turn in _EXACT_TURNS:  # lossless, and no resampling blur on quarter turns
            return image.transpose(_EXACT_TURNS[int(turn)])
        fill = (0, 0, 0, 0) if image.mode == "RGBA" else (255, 255, 255)
        return image.rotate(-turn, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=fill)


@dataclass(frozen=True)
class Mirror:
    axis: Literal["horizontal", "vertical"] = "horizontal"

    def apply(self, image: Image.Image) -> Image.Image:
        return ImageOps.mirror(image) if self.axis == "horizontal" else ImageOps.flip(image)


@dataclass(frozen=True)
class CropToRatio:
    """The largest centred crop with this width:height ratio."""

    width: int
    height: int

    def apply(self, image: Image.Image) -> Image.Image:
        img_w, img_h = image.size
        if img_w * self.height > img_h * self.width:
            new_w, new_h = max(1, round(img_h * self.width / self.height)), img_h
        else:
            new_w, new_h = img_w, max(1, round(img_w * self.height / self.width))
        left, top = (img_w - new_w) // 2, (img_h - new_h) // 2
        return image.crop((left, top, left + new_w, top + new_h))


@dataclass(frozen=True)
class Resize:
    width: int
    height: int

    def apply(self, image: Image.Image) -> Image.Image:
        return image.resize((self.width, self.height), Image.Resampling.LANCZOS)


@dataclass(frozen=True)
class Caption:
    """White text on a translucent dark band along the bottom; several lines stack."""

    text: str

    def apply(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        font = _caption_font(self.text, max_width=int(width * 0.9), max_height=max(1, height // 4),
                             start_size=max(10, height // 12))
        font_size = getattr(font, "size", 10)
        stroke = max(1, round(font_size / 18))
        measure = ImageDraw.Draw(image)
        left, top, right, bottom = measure.multiline_textbbox((0, 0), self.text, font=font,
                                                              stroke_width=stroke, align="center")
        pad = max(2, round(font_size * 0.4))
        band_top = max(0, height - (bottom - top) - 2 * pad)

        canvas = image.convert("RGBA")
        band = Image.new("RGBA", image.size, (0, 0, 0, 0))
        ImageDraw.Draw(band).rectangle((0, band_top, width, height), fill=(0, 0, 0, 140))
        canvas.alpha_composite(band)
        ImageDraw.Draw(canvas).multiline_text(
            ((width - (right - left)) / 2 - left, band_top + pad - top), self.text, font=font,
            fill=(255, 255, 255, 255), stroke_width=stroke, stroke_fill=(0, 0, 0, 255), align="center")
        return canvas if image.mode == "RGBA" else canvas.convert("RGB")


def _caption_font(text: str, *, max_width: int, max_height: int,
                  start_size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's built-in font at the largest size (from start_size down) that fits the box."""
    size = start_size
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    while True:
        try:
            font: ImageFont.FreeTypeFont | ImageFont.ImageFont = ImageFont.load_default(size)
        except ImportError:  # Pillow built without FreeType: one fixed-size bitmap font
            return ImageFont.load_default()
        left, top, right, bottom = probe.multiline_textbbox((0, 0), text, font=font)
        if size <= 6 or (right - left <= max_width and bottom - top <= max_height):
            return font
        size = max(6, int(size * 0.85))


EditOp = (Grayscale | Sepia | Blur | Sharpen | Brightness | Contrast | Invert | Rotate | Mirror
          | CropToRatio | Resize | Caption)


# --- Parsing ------------------------------------------------------------------------------------

_NUMBER = r"\d+(?:\.\d+)?"
_OBJECT = r"(?:\s+(?:it|the\s+(?:image|photo|picture)))?"
_PERCENT = rf"(?:{_OBJECT}\s+(?:by\s+)?(?P<pct>{_NUMBER})\s*(?:%|percent))?"
_QUOTED = r"""(?:"(?P<dq>[^"]+)"|“(?P<cq>[^”]+)”|'(?P<sq>[^']+)'|‘(?P<csq>[^’]+)’)"""


def _percent(match: re.Match[str], default: float, *, low: float, high: float, what: str) -> float:
    value = float(match["pct"]) if match["pct"] else default
    if not low < value <= high:
        raise UnsupportedPrompt(f"{what} must be more than {low:g}% and at most {high:g}%, not {value:g}%.")
    return value


def _blur(match: re.Match[str]) -> Blur:
    radius = float(match["radius"]) if match["radius"] else 4.0
    if not 0 < radius <= 50:
        raise UnsupportedPrompt(f"A blur radius must be more than 0 and at most 50 px, not {radius:g}.")
    return Blur(radius)


def _brighten(match: re.Match[str]) -> Brightness:
    return Brightness(1 + _percent(match, 30, low=0, high=300, what="Brightening") / 100)


def _darken(match: re.Match[str]) -> Brightness:
    return Brightness(1 - _percent(match, 30, low=0, high=99, what="Darkening") / 100)


def _contrast(match: re.Match[str]) -> Contrast:
    if (match["dir"] or "").lower() in {"reduce", "decrease", "less", "lower"}:
        return Contrast(1 - _percent(match, 30, low=0, high=99, what="Reducing contrast") / 100)
    return Contrast(1 + _percent(match, 30, low=0, high=300, what="Increasing contrast") / 100)


def _rotate(match: re.Match[str]) -> Rotate:
    degrees = float(match["deg"]) if match["deg"] else 90.0
    direction = re.sub(r"\s+", " ", (match["dir"] or "").lower())
    if direction in {"ccw", "left", "to the left"} or "counter" in direction or "anti" in direction:
        degrees = -degrees
    return Rotate(degrees)


def _mirror(match: re.Match[str]) -> Mirror:
    axis = (match["axis"] or "").lower()
    return Mirror("vertical" if axis.startswith(("vert", "upside", "top")) else "horizontal")


def _crop(match: re.Match[str]) -> CropToRatio:
    if not match["w"]:
        return CropToRatio(1, 1)
    width, height = int(match["w"]), int(match["h"])
    if width == 0 or height == 0:
        raise UnsupportedPrompt(f"A crop ratio needs two positive numbers, not {width}:{height}.")
    return CropToRatio(width, height)


def _resize(match: re.Match[str]) -> Resize:
    width, height = int(match["w"]), int(match["h"])
    if not (1 <= width <= MAX_OUTPUT_SIDE and 1 <= height <= MAX_OUTPUT_SIDE):
        raise UnsupportedPrompt(f"Resize sides must be between 1 and {MAX_OUTPUT_SIDE} px, "
                                f"not {width}x{height}.")
    return Resize(width, height)


def _caption(match: re.Match[str]) -> Caption:
    text = next(group for group in (match["dq"], match["cq"], match["sq"], match["csq"]) if group).strip()
    if len(text) > MAX_CAPTION_CHARS:
        raise UnsupportedPrompt(f"A caption can be at most {MAX_CAPTION_CHARS} characters, not {len(text)}.")
    return Caption(text)


_RULES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], EditOp]], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), build) for pattern, build in (
        (rf"\b(?:caption|text|title|label|headline)\b(?:\s+(?:that\s+says|saying|reading|with))?"
         rf"\s*:?\s*{_QUOTED}", _caption),
        (r"\b(?:gr[ae]y\s*-?\s*scale|black\s*(?:and|&|n)\s*white|b\s*&\s*w|b/w|monochrome|desaturated?)\b",
         lambda _: Grayscale()),
        (r"\bsepia\b", lambda _: Sepia()),
        (rf"\b(?:blur(?:red|ry)?|soften)\b(?:{_OBJECT}\s+(?:by\s+|with\s+(?:a\s+)?radius\s+(?:of\s+)?"
         rf"|radius\s+)?(?P<radius>{_NUMBER})\s*(?:px|pixels?)?)?", _blur),
        (r"\bsharpen(?:ed)?\b|\bsharper\b", lambda _: Sharpen()),
        (rf"\b(?:brighten|brighter|lighten|lighter|(?:increase|raise|boost)\s+(?:the\s+)?brightness)\b"
         rf"{_PERCENT}", _brighten),
        (rf"\b(?:darken|darker|dim|(?:reduce|decrease|lower)\s+(?:the\s+)?brightness)\b{_PERCENT}", _darken),
        (rf"\b(?:(?P<dir>increase|boost|more|raise|higher|add|reduce|decrease|less|lower)\s+(?:the\s+)?)?"
         rf"contrast\b{_PERCENT}", _contrast),
        (r"\b(?:invert(?:ed)?(?:\s+(?:the\s+)?colou?rs?)?|negative)\b", lambda _: Invert()),
        (rf"\brotate[ds]?\b{_OBJECT}(?:\s+(?:by\s+)?(?P<deg>-?{_NUMBER})\s*(?:°|degrees?|deg)?)?"
         r"(?:\s+(?P<dir>clockwise|cw|counter[\s-]?clockwise|anti[\s-]?clockwise|ccw|to\s+the\s+left"
         r"|to\s+the\s+right|left|right)\b)?", _rotate),
        (rf"\b(?:mirror(?:ed)?|flip(?:ped)?)\b{_OBJECT}(?:\s+(?P<axis>horizontally|horizontal|vertically"
         r"|vertical|upside[\s-]*down|left[\s-]*to[\s-]*right|top[\s-]*to[\s-]*bottom))?", _mirror),
        (rf"\bcrop(?:ped)?\b{_OBJECT}(?:\s+(?:to|into|as))?(?:\s+(?:an?|the))?\s+"
         r"(?:(?P<w>\d{1,5})\s*[:x×/]\s*(?P<h>\d{1,5})|square)\b(?:\s+(?:aspect\s+)?ratio)?", _crop),
        (r"\b(?:square\s+crop|make\s+it\s+square"
         r"|aspect\s+ratio\s+(?:of\s+)?(?P<w>\d{1,5})\s*:\s*(?P<h>\d{1,5}))\b", _crop),
        (rf"\b(?:resized?|scaled?|resample)\b{_OBJECT}(?:\s+(?:down\s+|up\s+)?to)?\s+"
         r"(?P<w>\d{1,5})\s*[x×]\s*(?P<h>\d{1,5})\b(?:\s*(?:px|pixels))?", _resize),
    )
)
_CAPTION_WORD = re.compile(r"\b(?:caption|title|label|headline)\b", re.IGNORECASE)


def parse_edit_prompt(prompt: str) -> list[EditOp]:
    """The edits a prompt asks for, in the order they will run.

    Raises UnsupportedPrompt, listing what is supported, when nothing is recognisable or a
    value is impossible (a 0:1 crop, darkening by 150%...).
    """
    found: list[tuple[int, int, Callable[[re.Match[str]], EditOp], re.Match[str]]] = []
    for pattern, build in _RULES:
        found.extend((m.start(), m.end(), build, m) for m in pattern.finditer(prompt))
    # Earliest, then longest, wins, so words inside a caption's quotes or inside a longer phrase
    # ("reduce brightness" vs "brightness") are not read twice.
    found.sort(key=lambda item: (item[0], -(item[1] - item[0])))
    ops: list[EditOp] = []
    covered_until = -1
    for start, end, build, match in found:
        if start >= covered_until:
            ops.append(build(match))
            covered_until = end

    captions = [op for op in ops if isinstance(op, Caption) and op.text]
    ops = [op for op in ops if not isinstance(op, Caption)]
    if captions:
        ops.append(Caption("\n".join(caption.text for caption in captions)))
    elif _CAPTION_WORD.search(prompt):
        raise UnsupportedPrompt('Put the caption text in quotes, e.g. add caption "Summer sale".')
    if not ops:
        raise UnsupportedPrompt("No edit this provider can do was found in the prompt. Supported edits: "
                                + "; ".join(SUPPORTED_EDITS) + ".")
    return ops


# --- Decoding, editing, encoding ----------------------------------------------------------------


def open_image(data: bytes) -> Image.Image:
    """Decode PNG, JPEG or WebP bytes into an upright RGB or RGBA image (first frame only)."""
    try:
        source = Image.open(io.BytesIO(data), formats=INPUT_FORMATS)
    except (OSError, Image.DecompressionBombError) as exc:
        raise InvalidInputImage("The file is not a PNG, JPEG or WebP image within size limits.") from exc
    with source:
        if source.width * source.height > MAX_INPUT_PIXELS:
            raise InvalidInputImage(f"The image is {source.width}x{source.height}; at most "
                                    f"{MAX_INPUT_PIXELS:,} pixels can be edited.")
        try:
            source.load()
            upright = ImageOps.exif_transpose(source)
        except (OSError, SyntaxError, ValueError) as exc:
            raise InvalidInputImage(f"The image could not be decoded: {exc}") from exc
        return upright.convert("RGBA" if upright.has_transparency_data else "RGB")


def edit_image(image: Image.Image, ops: Sequence[EditOp]) -> Image.Image:
    for op in ops:
        image = op.apply(image)
    return image


def encode_image(image: Image.Image, output_format: str = "png") -> bytes:
    """PNG, JPEG or WebP bytes; JPEG has no alpha, so transparency is laid on white."""
    fmt = output_format.lower()
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, "PNG")
    elif fmt in ("jpeg", "jpg"):
        if image.mode == "RGBA":
            flat = Image.new("RGB", image.size, (255, 255, 255))
            flat.paste(image, mask=image.getchannel("A"))
            image = flat
        image.save(buffer, "JPEG", quality=90)
    elif fmt == "webp":
        image.save(buffer, "WEBP", quality=90, method=4)
    else:
        raise ValueError(f"Unsupported output format {output_format!r}: use png, jpeg or webp.")
    return buffer.getvalue()


def apply_edits(image: bytes, prompt: str, output_format: str = "png") -> bytes:
    """Edit an image as the prompt asks and encode the result.

    Raises UnsupportedPrompt for a prompt with no supported edit, InvalidInputImage for bytes
    that are not an image, ValueError for an unknown output format.
    """
    ops = parse_edit_prompt(prompt)
    if output_format.lower() not in ("png", "jpeg", "jpg", "webp"):
        raise ValueError(f"Unsupported output format {output_format!r}: use png, jpeg or webp.")
    return encode_image(edit_image(open_image(image), ops), output_format)
