import io
import wave

import pytest
from genrail_localprovider.work.media import STYLES, static_ad, tts, ugc_video
from PIL import Image, ImageDraw


def _png(width: int = 320, height: int = 240) -> bytes:
    image = Image.new("RGB", (width, height), "#F3F4F6")
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((60, 30, 260, 210), radius=40, fill="#2563EB")
    draw.ellipse((120, 80, 200, 160), fill="white")
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _animation(data: bytes) -> tuple[Image.Image, int]:
    """The opened animation and its total duration in milliseconds."""
    image = Image.open(io.BytesIO(data))
    total_ms = 0
    for frame in range(image.n_frames):
        image.seek(frame)
        image.load()
        total_ms += image.info["duration"]
    return image, total_ms


@pytest.mark.parametrize("style", list(STYLES))
def test_static_ad_is_a_png_of_the_requested_size(style):
    data, content_type = static_ad(
        {
            "headline": "Hydration that goes where you go",
            "cta": "Shop now",
            "style": style,
            "product_image": _png(),
            "brand_colors": ["#0EA5E9"],
            "width": 800,
            "height": 1000,
        }
    )
    assert content_type == "image/png"
    image = Image.open(io.BytesIO(data))
    assert (image.format, image.size) == ("PNG", (800, 1000))
    assert len(image.getcolors(maxcolors=1_000_000) or []) > 10  # a composed picture, not a blank


def test_static_ad_without_product_image_draws_a_card():
    data, _ = static_ad({"headline": "Fresh drop"})
    assert Image.open(io.BytesIO(data)).size == (1080, 1080)


def test_static_ad_is_deterministic_and_depends_on_its_input():
    spec = {
        "headline": "Fresh drop",
        "style": "vibrant",
        "product_image": _png(),
        "width": 400,
        "height": 400,
    }
    assert static_ad(spec) == static_ad(dict(spec))
    assert static_ad(spec) != static_ad({**spec, "headline": "Fresh drops"})
    assert static_ad(spec) != static_ad({**spec, "style": "minimal"})


def test_long_words_and_headlines_still_fit():
    data, _ = static_ad({"headline": "Supercalifragilisticexpialidocious " * 8, "width": 256, "height": 256})
    assert Image.open(io.BytesIO(data)).size == (256, 256)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({}, "headline or a product_image"),
        ({"headline": "x", "style": "loud"}, "style"),
        ({"headline": "x", "brand_colors": ["#12"]}, "brand color"),
        ({"headline": "x", "brand_colors": "#123456"}, "brand_colors"),
        ({"product_image": b"not an image"}, "not a readable image"),
        ({"product_image": "https://example.com/a.png"}, "image bytes"),
        ({"headline": "x", "width": 10}, "width"),
        ({"headline": "x" * 1000}, "longer than"),
    ],
)
def test_static_ad_rejects_impossible_inputs(spec, message):
    with pytest.raises(ValueError, match=message):
        static_ad(spec)


def test_ugc_video_is_an_animated_webp_of_the_requested_length():
    data, content_type = ugc_video(
        {
            "script": "I tried this for a week and it changed my mornings",
            "product_image": _png(),
            "duration_s": 2,
            "fps": 10,
            "width": 180,
            "height": 320,
        }
    )
    assert content_type == "image/webp"
    image, total_ms = _animation(data)
    assert (image.format, image.size, image.is_animated) == ("WEBP", (180, 320), True)
    assert total_ms == 2000
    assert image.n_frames > 5  # consecutive identical frames may be merged, not all


def test_ugc_video_without_product_animates_a_generated_card_and_clamps_duration():
    data, _ = ugc_video(
        {
            "headline": "New flavours",
            "style": "minimal",
            "duration_s": 60,
            "fps": 4,
            "width": 128,
            "height": 128,
        }
    )
    image, total_ms = _animation(data)
    assert image.is_animated and total_ms == 8000


def test_ugc_video_is_deterministic():
    spec = {"script": "Same words", "duration_s": 1, "fps": 6, "width": 128, "height": 160}
    assert ugc_video(spec) == ugc_video(dict(spec))


def test_ugc_video_rejects_impossible_inputs():
    with pytest.raises(ValueError, match="script"):
        ugc_video({})
    with pytest.raises(ValueError, match="fps"):
        ugc_video({"script": "x", "fps": 1000})


def _wav(data: bytes) -> tuple[wave.Wave_read, bytes]:
    reader = wave.open(io.BytesIO(data))
    return reader, reader.readframes(reader.getnframes())


@pytest.mark.parametrize("requested, expected", [(2.5, 2.5), (0.01, 0.5), (600, 30.0)])
def test_tts_is_a_wav_of_the_requested_clamped_duration(requested, expected):
    data, content_type = tts({"text": "Hello there, this is genrail speaking!", "duration_s": requested})
    assert content_type == "audio/wav"
    reader, frames = _wav(data)
    assert (reader.getnchannels(), reader.getsampwidth()) == (1, 2)
    assert reader.getnframes() / reader.getframerate() == pytest.approx(expected, abs=1e-4)
    assert any(frames)  # not silence


def test_tts_default_duration_follows_the_text_length():
    short, _ = _wav(tts({"text": "Hi"})[0])
    long, _ = _wav(tts({"text": " ".join(["word"] * 20)})[0])
    assert short.getnframes() < long.getnframes()


def test_tts_is_deterministic_and_depends_on_text_and_voice():
    assert tts({"text": "Hello", "duration_s": 1}) == tts({"text": "Hello", "duration_s": 1})
    assert tts({"text": "Hello", "duration_s": 1}) != tts({"text": "Howdy", "duration_s": 1})
    assert tts({"text": "Hello", "duration_s": 1}) != tts(
        {"text": "Hello", "duration_s": 1, "voice": "bright"}
    )


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"text": "  "},
        {"text": "?!"},
        {"text": 42},
        {"text": "hi", "duration_s": "2"},
        {"text": "hi", "duration_s": float("nan")},
    ],
)
def test_tts_rejects_impossible_inputs(spec):
    with pytest.raises(ValueError):
        tts(spec)
