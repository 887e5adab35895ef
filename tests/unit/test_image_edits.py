"""The prompt-driven Pillow edits the local provider does behind OpenAI's images/edits."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageFilter, ImageStat

from genrail_localprovider.work.image_edits import (
    Blur,
    Brightness,
    Caption,
    Contrast,
    CropToRatio,
    Grayscale,
    InvalidInputImage,
    Invert,
    Mirror,
    Resize,
    Rotate,
    Sepia,
    Sharpen,
    UnsupportedPrompt,
    apply_edits,
    open_image,
    parse_edit_prompt,
)

RED, BLUE = (220, 30, 30), (30, 30, 220)


def encode(image: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def halves(size: tuple[int, int] = (120, 80)) -> Image.Image:
    """Left half red, right half blue."""
    image = Image.new("RGB", size, BLUE)
    image.paste(RED, (0, 0, size[0] // 2, size[1]))
    return image


def edited(image: Image.Image, prompt: str) -> Image.Image:
    return decode(apply_edits(encode(image), prompt))


def test_combined_prompt_parses_in_order_with_the_caption_last() -> None:
    ops = parse_edit_prompt("Add caption 'Summer sale', make it black and white and rotate 90")
    assert ops == [Grayscale(), Rotate(90), Caption("Summer sale")]


@pytest.mark.parametrize(("prompt", "expected"), [
    ("sepia please", [Sepia()]),
    ("blur by 3px then sharpen", [Blur(3), Sharpen()]),
    ("brighten 20%, reduce contrast by 10%", [Brightness(1.2), Contrast(0.9)]),
    ("darken it by 50 percent and increase the contrast", [Brightness(0.5), Contrast(1.3)]),
    ("Invert the colours", [Invert()]),
    ("rotate 30 degrees counter-clockwise, rotate left", [Rotate(-30), Rotate(-90)]),
    ("mirror it, flip vertically", [Mirror("horizontal"), Mirror("vertical")]),
    ("crop to 16:9", [CropToRatio(16, 9)]),
    ("crop it square", [CropToRatio(1, 1)]),
    ("resize to 640x360", [Resize(640, 360)]),
    ('GRAYSCALE and add text "Blur me, rotate 90"', [Grayscale(), Caption("Blur me, rotate 90")]),
])
def test_prompts_parse_to_operations(prompt: str, expected: list[object]) -> None:
    assert parse_edit_prompt(prompt) == expected


def test_a_prompt_with_no_supported_edit_lists_what_is_supported() -> None:
    with pytest.raises(UnsupportedPrompt) as raised:
        parse_edit_prompt("make it look like a watercolour painting")
    message = str(raised.value)
    for hint in ("black and white", "rotate", "crop to a ratio", "add caption"):
        assert hint in message


@pytest.mark.parametrize(("prompt", "hint"), [
    ("add caption Summer sale", "in quotes"),
    ("darken by 150%", "at most 99%"),
    ("crop to 0:4", "positive"),
    ("resize to 10000x10", "between 1 and 4096"),
    ("blur by 500", "at most 50"),
])
def test_impossible_requests_are_refused_with_the_reason(prompt: str, hint: str) -> None:
    with pytest.raises(UnsupportedPrompt, match=hint):
        parse_edit_prompt(prompt)


def test_grayscale_makes_every_pixel_neutral() -> None:
    result = edited(halves(), "make it black and white")
    assert result.size == (120, 80)
    assert all(r == g == b for r, g, b in result.convert("RGB").getdata())


def test_sepia_gives_a_warm_brown_tone() -> None:
    r, g, b = edited(Image.new("RGB", (8, 8), (100, 150, 200)), "sepia").getpixel((4, 4))
    assert r > g > b


def test_invert_complements_each_channel() -> None:
    assert edited(Image.new("RGB", (8, 8), (10, 100, 200)), "invert").getpixel((3, 3)) == (245, 155, 55)


def test_rotate_90_turns_clockwise_and_swaps_width_and_height() -> None:
    result = edited(halves((120, 80)), "rotate 90")
    assert result.size == (80, 120)
    assert result.getpixel((40, 10)) == RED  # the left half is now on top
    assert result.getpixel((40, 110)) == BLUE


def test_rotate_by_an_odd_angle_grows_the_canvas_to_keep_the_corners() -> None:
    result = edited(halves((100, 100)), "rotate 45")
    assert result.width > 100 and result.height > 100


def test_mirror_and_flip() -> None:
    assert edited(halves(), "mirror").getpixel((5, 40)) == BLUE
    top_red = Image.new("RGB", (40, 40), BLUE)
    top_red.paste(RED, (0, 0, 40, 20))
    assert edited(top_red, "flip vertically").getpixel((20, 35)) == RED


@pytest.mark.parametrize(("prompt", "size"), [
    ("crop to 1:1", (80, 80)), ("crop to 16:9", (120, 68)), ("crop to 4:5", (64, 80)),
])
def test_crop_to_ratio_keeps_the_largest_centred_area(prompt: str, size: tuple[int, int]) -> None:
    result = edited(halves((120, 80)), prompt)
    assert result.size == size
    if size == (80, 80):  # centred: 20 px cut from each side, so both colours remain
        assert result.getpixel((5, 40)) == RED and result.getpixel((75, 40)) == BLUE


def test_blur_softens_a_hard_edge() -> None:
    r, _, b = edited(halves(), "blur by 4px").getpixel((60, 40))
    assert 30 < r < 220 and 30 < b < 220


def test_sharpen_raises_local_contrast() -> None:
    soft = halves().filter(ImageFilter.GaussianBlur(3))
    before = ImageStat.Stat(soft.convert("L")).stddev[0]
    after = ImageStat.Stat(edited(soft, "sharpen").convert("L")).stddev[0]
    assert after > before


def test_brighten_and_darken_scale_brightness() -> None:
    grey = Image.new("RGB", (8, 8), (100, 100, 100))
    assert edited(grey, "brighten by 20%").getpixel((0, 0)) == (120, 120, 120)
    assert edited(grey, "darken by 50%").getpixel((0, 0)) == (50, 50, 50)


def test_more_contrast_pushes_colours_away_from_the_mean() -> None:
    image = Image.new("RGB", (20, 10), (100, 100, 100))
    image.paste((160, 160, 160), (10, 0, 20, 10))
    result = edited(image, "increase contrast by 50%")
    assert result.getpixel((5, 5))[0] < 100 < 160 < result.getpixel((15, 5))[0]


def test_resize_to_exact_dimensions() -> None:
    assert edited(halves(), "resize to 64x48").size == (64, 48)


def test_caption_draws_only_in_a_band_along_the_bottom() -> None:
    source = Image.new("RGB", (300, 200), (40, 160, 90))
    result = edited(source, "add caption 'Summer sale'")
    assert result.size == source.size
    assert result.crop((0, 0, 300, 120)).tobytes() == source.crop((0, 0, 300, 120)).tobytes()
    band = result.crop((0, 170, 300, 200))
    assert band.tobytes() != source.crop((0, 170, 300, 200)).tobytes()
    assert (255, 255, 255) in {pixel for pixel in band.getdata()}  # the white text itself


def test_combined_prompt_applies_every_edit() -> None:
    result = edited(halves((120, 80)), "make it black and white, rotate 90 and add caption 'Summer sale'")
    assert result.size == (80, 120)
    top = result.crop((0, 0, 80, 60)).convert("RGB")
    assert all(r == g == b for r, g, b in top.getdata())
    assert result.getpixel((40, 10)) != result.getpixel((40, 80))  # red and blue give different greys


def test_transparency_survives_colour_edits() -> None:
    image = Image.new("RGBA", (10, 10), (200, 50, 50, 255))
    image.putpixel((0, 0), (0, 0, 0, 0))
    result = edited(image, "invert, grayscale and brighten")
    assert result.mode == "RGBA"
    assert result.getpixel((0, 0))[3] == 0 and result.getpixel((5, 5))[3] == 255


@pytest.mark.parametrize(("fmt", "pillow_format"), [("jpeg", "JPEG"), ("webp", "WEBP"), ("png", "PNG")])
def test_output_formats(fmt: str, pillow_format: str) -> None:
    image = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    result = decode(apply_edits(encode(image), "invert", output_format=fmt))
    assert result.format == pillow_format
    if fmt == "jpeg":  # no alpha in JPEG: transparency is laid on white
        assert result.mode == "RGB" and min(result.getpixel((8, 8))) > 245


def test_same_image_and_prompt_give_the_same_bytes() -> None:
    source = encode(halves())
    prompt = "sepia, blur 2, rotate 33 and add caption 'Same every time'"
    assert apply_edits(source, prompt) == apply_edits(source, prompt)
    assert apply_edits(source, prompt, "webp") == apply_edits(source, prompt, "webp")


def test_exif_orientation_is_honoured() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    jpeg = encode(Image.new("RGB", (60, 40), RED), "JPEG", exif=exif.tobytes())
    assert open_image(jpeg).size == (40, 60)


def test_bytes_that_are_not_an_image_are_refused() -> None:
    with pytest.raises(InvalidInputImage):
        apply_edits(b"hello, not an image", "invert")
    with pytest.raises(InvalidInputImage):
        apply_edits(encode(halves())[:60], "invert")


def test_unknown_output_format_is_refused() -> None:
    with pytest.raises(ValueError, match="png, jpeg or webp"):
        apply_edits(encode(halves()), "invert", output_format="gif")
