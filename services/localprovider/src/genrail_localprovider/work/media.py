"""Real, deterministic media for the local provider: ad images, short animations, speech-like audio.

Same input, same bytes: nothing here reads the clock, the network or a random source (variation
comes from SHA-256 of the inputs), and the only font is the one bundled with Pillow.
Each function takes the model's input dict and returns (bytes, content type); inputs that cannot
be rendered raise ValueError with a message fit for a prediction's `error`.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import wave
from array import array
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageColor, ImageDraw, ImageFilter, ImageFont, ImageOps, UnidentifiedImageError

RGB = tuple[int, int, int]

STYLES: dict[str, tuple[str, str]] = {  # style -> default (primary, accent) colors
    "bold": ("#111827", "#F59E0B"),
    "minimal": ("#1F2937", "#9CA3AF"),
    "vibrant": ("#DB2777", "#7C3AED"),
}
MAX_TEXT_CHARS = 300
MAX_SOURCE_PIXELS = 40_000_000
TTS_SAMPLE_RATE = 22_050
TTS_MIN_S, TTS_MAX_S = 0.5, 30.0


def _seed(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "big")


def _text(input: dict[str, Any], field: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    value = input.get(field)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string")
    value = " ".join(value.split())
    if len(value) > max_chars:
        raise ValueError(f"{field} is longer than {max_chars} characters")
    return value


def _int_in(input: dict[str, Any], field: str, default: int, low: int, high: int) -> int:
    value = input.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{field} must be an integer from {low} to {high}")
    return value


def _number(input: dict[str, Any], field: str) -> float | None:
    value = input.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{field} must be a finite number")
    return float(value)


@dataclass(frozen=True)
class _Look:
    style: str
    primary: RGB
    accent: RGB


def _look(input: dict[str, Any]) -> _Look:
    style = input.get("style") or "bold"
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}")
    given = input.get("brand_colors") or []
    if not isinstance(given, list) or len(given) > 5:
        raise ValueError("brand_colors must be a list of at most 5 colors such as '#0EA5E9'")
    colors: list[RGB] = []
    for color in given:
        try:
            colors.append(ImageColor.getrgb(color)[:3])  # type: ignore[arg-type]
        except (ValueError, AttributeError, TypeError):
            raise ValueError(f"brand color {color!r} is not a color such as '#0EA5E9'") from None
    defaults = [ImageColor.getrgb(c)[:3] for c in STYLES[style]]
    primary, accent = (colors + defaults[len(colors) :])[:2]
    return _Look(style, primary, accent)


def _product_image(input: dict[str, Any]) -> Image.Image | None:
    data = input.get("product_image")
    if data is None:
        return None
    if not isinstance(data, (bytes, bytearray)):
        raise ValueError("product_image must be image bytes (fetch URLs before calling)")
    try:
        with Image.open(io.BytesIO(data)) as opened:
            if opened.width * opened.height > MAX_SOURCE_PIXELS:
                raise ValueError("product_image is too large")
            image = ImageOps.exif_transpose(opened).convert("RGBA")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise ValueError("product_image is not a readable image") from None
    return image


def _contrast(color: RGB) -> RGB:
    luminance = 0.2126 * color[0] + 0.7152 * color[1] + 0.0722 * color[2]
    return (17, 17, 17) if luminance > 150 else (255, 255, 255)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Any, max_width: float) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        while len(word) > 1 and draw.textlength(word, font=font) > max_width:  # break over-long words
            cut = len(word) - 1
            while cut > 1 and draw.textlength(word[:cut], font=font) > max_width:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= max_width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def _fit_text(
    text: str, box_w: float, box_h: float, start: int, max_lines: int
) -> tuple[Any, list[str], int]:
    """The largest font (from `start` down) at which `text` wraps into the box: (font, lines, line height)."""
    draw = ImageDraw.Draw(Image.new("L", (1, 1)))
    size = start
    while True:
        font = ImageFont.load_default(size=size)
        lines = _wrap(draw, text, font, box_w)
        line_h = int(size * 1.2)
        if size <= 12 or (len(lines) <= max_lines and line_h * len(lines) <= box_h):
            return font, lines, line_h
        size = int(size * 0.9)


def _draw_lines(
    draw: ImageDraw.ImageDraw,
    lines: list[str],
    font: Any,
    line_h: int,
    top: tuple[float, float],
    fill: RGB,
    stroke: int = 0,
    stroke_fill: RGB | None = None,
) -> None:
    for i, line in enumerate(lines):
        draw.text(
            (top[0], top[1] + i * line_h),
            line,
            font=font,
            fill=fill,
            anchor="ma",
            stroke_width=stroke,
            stroke_fill=stroke_fill or fill,
        )


def _pattern(size: tuple[int, int], look: _Look, seed: int) -> Image.Image:
    """A geometric placeholder for ads without a product photo."""
    width, height = size
    card = Image.new("RGBA", size, (*look.accent, 255))
    draw = ImageDraw.Draw(card)
    for i in range(6):
        r = int(min(width, height) * (0.15 + ((seed >> (i * 5)) % 16) / 40))
        cx, cy = (seed >> (i * 7)) % width, (seed >> (i * 9 + 3)) % height
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(*look.primary, 90 + 25 * (i % 3)))
    return card


def _background(size: tuple[int, int], look: _Look) -> Image.Image:
    if look.style == "vibrant":
        ramp = Image.linear_gradient("L").resize(size)
        return Image.composite(
            Image.new("RGBA", size, look.accent), Image.new("RGBA", size, look.primary), ramp
        )
    return Image.new("RGBA", size, look.primary if look.style == "bold" else (247, 247, 245))


def _place_visual(
    canvas: Image.Image, look: _Look, visual: Image.Image, box: tuple[int, int, int, int]
) -> None:
    left, top, right, bottom = box
    fitted = ImageOps.contain(visual, (right - left, bottom - top), Image.Resampling.LANCZOS)
    x = left + (right - left - fitted.width) // 2
    y = top + (bottom - top - fitted.height) // 2
    x1, y1 = x + fitted.width, y + fitted.height
    if look.style == "vibrant":  # a white card with a soft shadow behind the product
        pad = max(8, fitted.width // 20)
        shadow = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
        ImageDraw.Draw(shadow).rounded_rectangle(
            (x - pad + 10, y - pad + 14, x1 + pad + 10, y1 + pad + 14), radius=pad * 2, fill=(0, 0, 0, 110)
        )
        canvas.alpha_composite(shadow.filter(ImageFilter.GaussianBlur(pad)))
        ImageDraw.Draw(canvas).rounded_rectangle(
            (x - pad, y - pad, x1 + pad, y1 + pad), radius=pad * 2, fill="white"
        )
    elif look.style == "minimal":
        ImageDraw.Draw(canvas).rectangle((x - 3, y - 3, x1 + 2, y1 + 2), outline=look.primary, width=2)
    canvas.alpha_composite(fitted, (x, y))


def _draw_headline(
    draw: ImageDraw.ImageDraw, look: _Look, headline: str, width: int, top: int, bottom: int
) -> None:
    margin = int(width * 0.07)
    minimal = look.style == "minimal"
    dark_primary = _contrast(look.primary) == (255, 255, 255)
    color = {
        "bold": _contrast(look.primary),
        "vibrant": (255, 255, 255),
        "minimal": look.primary if dark_primary else (17, 17, 17),
    }[look.style]
    start = int(width * (0.05 if minimal else 0.07))
    font, lines, line_h = _fit_text(headline, width - 2 * margin, bottom - top, start, max_lines=3)
    # A stroke in the text's own colour reads as bold; vibrant gets a dark outline instead.
    outline = (40, 16, 60) if look.style == "vibrant" else color
    stroke = 0 if minimal else max(1, line_h // 32)
    _draw_lines(draw, lines, font, line_h, (width / 2, top), color, stroke, outline)
    if minimal:
        underline_y = top + line_h * len(lines) + line_h // 4
        draw.rectangle(
            (width / 2 - margin, underline_y, width / 2 + margin, underline_y + 3), fill=look.accent
        )


def _draw_cta(
    draw: ImageDraw.ImageDraw, look: _Look, cta: str, center_x: float, bottom: int, height: int
) -> None:
    font, lines, _ = _fit_text(cta, center_x, height * 0.6, int(height * 0.5), max_lines=1)
    label_w = draw.textlength(lines[0], font=font) + height
    pill = (center_x - label_w / 2, bottom - height, center_x + label_w / 2, bottom)
    vibrant = look.style == "vibrant"
    draw.rounded_rectangle(pill, radius=height // 2, fill=(255, 255, 255) if vibrant else look.accent)
    label_color = look.primary if vibrant else _contrast(look.accent)
    draw.text((center_x, bottom - height / 2), lines[0], font=font, anchor="mm", fill=label_color)


def _compose_ad(
    size: tuple[int, int], look: _Look, product: Image.Image | None, headline: str, cta: str
) -> Image.Image:
    """Product (or a pattern) on top, headline below it, call-to-action pill at the bottom."""
    width, height = size
    canvas = _background(size, look)
    draw = ImageDraw.Draw(canvas)
    margin = int(width * 0.07)
    text_top = int(height * (0.72 if headline else 0.86))
    box = (margin, margin, width - margin, text_top - margin // 2)
    visual = product or _pattern((box[2] - box[0], box[3] - box[1]), look, _seed(headline, cta, look.style))
    _place_visual(canvas, look, visual, box)
    cta_h = int(height * 0.07) if cta else 0
    if headline:
        _draw_headline(draw, look, headline, width, text_top, height - margin - cta_h - margin // 3)
    if cta:
        _draw_cta(draw, look, cta, width / 2, height - margin, cta_h)
    return canvas.convert("RGB")


def static_ad(input: dict[str, Any]) -> tuple[bytes, str]:
    """A PNG ad: `product_image` (bytes, optional), `headline`, `cta`, `style`, `brand_colors`,
    `width`/`height` (default 1080x1080)."""
    look, headline, cta = _look(input), _text(input, "headline"), _text(input, "cta", 40)
    product = _product_image(input)
    if not headline and product is None:
        raise ValueError("a static ad needs a headline or a product_image")
    size = (_int_in(input, "width", 1080, 256, 2048), _int_in(input, "height", 1080, 256, 2048))
    out = io.BytesIO()
    _compose_ad(size, look, product, headline, cta).save(out, format="PNG", optimize=False)
    return out.getvalue(), "image/png"


def _ken_burns(scene: Image.Image, size: tuple[int, int], t: float, pan: tuple[int, int]) -> Image.Image:
    """The frame at time t in [0, 1] of a slow zoom (1x to 1.2x) that drifts towards `pan`."""
    eased = t * t * (3 - 2 * t)
    zoom = 1.0 + 0.2 * eased
    crop_w, crop_h = scene.width / zoom, scene.height / zoom
    cx = scene.width / 2 + pan[0] * (scene.width - crop_w) / 2 * (eased - 0.5)
    cy = scene.height / 2 + pan[1] * (scene.height - crop_h) / 2 * (eased - 0.5)
    box = (cx - crop_w / 2, cy - crop_h / 2, cx + crop_w / 2, cy + crop_h / 2)
    return scene.resize(size, Image.Resampling.BILINEAR, box=box).convert("RGBA")


def ugc_video(input: dict[str, Any]) -> tuple[bytes, str]:
    """An animated WebP: a Ken Burns zoom and pan over the product (or a generated card) with the
    `script` (or `headline`) revealed word by word. `duration_s` 1-8 (default 3), `fps` 4-24
    (default 12), `width`/`height` (default 360x640)."""
    look, script = _look(input), _text(input, "script") or _text(input, "headline")
    product = _product_image(input)
    if not script and product is None:
        raise ValueError("a UGC video needs a script, a headline or a product_image")
    width, height = _int_in(input, "width", 360, 128, 720), _int_in(input, "height", 640, 128, 1280)
    requested = _number(input, "duration_s")
    duration_s = min(8.0, max(1.0, 3.0 if requested is None else requested))
    fps = _int_in(input, "fps", 12, 4, 24)

    scene_size = (int(width * 1.25), int(height * 1.25))
    if product is not None:  # transparent products are shown over the style's background
        scene = _background(scene_size, look)
        scene.alpha_composite(ImageOps.fit(product, scene_size, Image.Resampling.LANCZOS))
    else:
        scene = _compose_ad(scene_size, look, None, "", "")
    seed = _seed(script, look.style)
    pan = (1 if seed & 1 else -1, 1 if seed & 2 else -1)
    words, band_h = script.split(), int(height * 0.24)
    font, _, line_h = _fit_text(script, width * 0.86, band_h * 0.8, int(height * 0.05), max_lines=3)
    frame_count, total_ms = max(2, round(duration_s * fps)), round(duration_s * 1000)
    frames = []
    for i in range(frame_count):
        t = i / (frame_count - 1)
        frame = _ken_burns(scene, (width, height), t, pan)
        if words:  # the caption band, its words appearing over the first 70% of the clip
            shown = " ".join(words[: max(1, math.ceil(len(words) * min(1.0, t / 0.7)))])
            draw = ImageDraw.Draw(frame, "RGBA")
            draw.rectangle((0, height - band_h, width, height), fill=(*look.primary, 170))
            lines = _wrap(draw, shown, font, width * 0.86)[:3]
            _draw_lines(
                draw, lines, font, line_h, (width / 2, height - band_h * 0.9), _contrast(look.primary), 1
            )
        frames.append(frame.convert("RGB"))
    # Integer milliseconds per frame that add up to exactly the requested duration.
    durations = [
        round((i + 1) * total_ms / frame_count) - round(i * total_ms / frame_count)
        for i in range(frame_count)
    ]
    out = io.BytesIO()
    frames[0].save(
        out,
        format="WEBP",
        save_all=True,
        append_images=frames[1:],
        duration=durations,
        loop=0,
        quality=80,
        method=4,
    )
    return out.getvalue(), "image/webp"


_SYLLABLE = re.compile(r"[^aeiouy]*[aeiouy]+(?:[^aeiouy]*$)?", re.IGNORECASE)
_PENTATONIC = (0, 2, 4, 7, 9, 12)


def _speech_units(text: str) -> list[tuple[str, float]]:
    """(unit, weight) pairs: syllables sound, word gaps and punctuation are silence ("")."""
    units: list[tuple[str, float]] = []
    for token in re.findall(r"[\w']+|[.,!?;:]", text):
        if token in ".!?":
            units.append(("", 1.2))
        elif token in ",;:":
            units.append(("", 0.6))
        else:
            units.extend((syllable, 1.0) for syllable in (_SYLLABLE.findall(token) or [token]))
            units.append(("", 0.3))
    return units


def tts(input: dict[str, Any]) -> tuple[bytes, str]:
    """A 16-bit mono WAV of `duration_s` (clamped to 0.5-30 s; by default about 2.5 words a second):
    one voiced tone per syllable of `text`, its pitch drawn from the syllable and the `voice`."""
    text = _text(input, "text", 5000)
    if not re.search(r"\w", text):
        raise ValueError("text must contain at least one word")
    voice = _text(input, "voice", 64) or "default"
    requested = _number(input, "duration_s")
    duration_s = requested if requested is not None else len(text.split()) / 2.5
    duration_s = min(TTS_MAX_S, max(TTS_MIN_S, duration_s))

    total_samples = round(duration_s * TTS_SAMPLE_RATE)
    units = _speech_units(text)
    total_weight = sum(weight for _, weight in units)
    base_hz = 110.0 + _seed("voice", voice) % 110
    samples = array("h")
    elapsed_weight = 0.0
    for unit, weight in units:
        start = round(elapsed_weight / total_weight * total_samples)
        elapsed_weight += weight
        length = round(elapsed_weight / total_weight * total_samples) - start
        if not unit:
            samples.frombytes(bytes(2 * length))
            continue
        step = _PENTATONIC[_seed(unit.lower()) % len(_PENTATONIC)]
        # Pitch falls slowly through the utterance, as it does in a spoken sentence.
        hz = base_hz * 2 ** (step / 12) * (1.0 - 0.15 * start / total_samples)
        fade = max(1, min(length // 4, TTS_SAMPLE_RATE // 100))
        omega = 2 * math.pi * hz / TTS_SAMPLE_RATE
        samples.extend(
            int(
                9000
                * min(1.0, n / fade, (length - n) / fade)
                * (math.sin(omega * n) + 0.5 * math.sin(2 * omega * n) + 0.25 * math.sin(3 * omega * n))
            )
            for n in range(length)
        )
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(TTS_SAMPLE_RATE)
        wav.writeframes(samples.tobytes())
    return out.getvalue(), "audio/wav"
