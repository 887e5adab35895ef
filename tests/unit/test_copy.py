"""Local ad copy: product-specific, deterministic, shaped by tone and length."""

from __future__ import annotations

import re

import pytest

from genrail_copywriter.copy import TONES, count_words, generate_copy, read_description

BOTTLE = {
    "product_name": "Aurora Bottle",
    "product_description": (
        "A stainless steel water bottle that keeps drinks cold for 24 hours and hot for 12. "
        "Leak-proof lid, fits in cup holders. Made from 90% recycled steel."
    ),
    "tone": "professional",
    "length": "medium",
}
BOOTS = {
    "product_name": "Trailblazer 2",
    "product_description": "Waterproof leather boots with a grippy Vibram sole.",
    "tone": "friendly",
    "length": "short",
}


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def test_all_fields_are_present_and_well_formed() -> None:
    copy = generate_copy(BOTTLE)

    assert set(copy) == {"headline", "body", "call_to_action", "hashtags", "word_count"}
    for field in ("headline", "body", "call_to_action"):
        assert isinstance(copy[field], str) and copy[field].strip()
    assert 2 <= len(copy["hashtags"]) <= 5
    assert all(re.fullmatch(r"#[A-Za-z0-9]+", tag) for tag in copy["hashtags"])
    assert copy["word_count"] == count_words(copy)
    assert copy["word_count"] == len(f"{copy['headline']} {copy['body']} {copy['call_to_action']}".split())


def test_copy_is_about_the_product() -> None:
    copy = generate_copy(BOTTLE)

    assert "Aurora Bottle" in copy["headline"]
    assert "Aurora Bottle" in copy["body"]
    assert "stainless steel water bottle" in copy["body"]
    assert "keeps drinks cold for 24 hours" in copy["body"]
    assert "a leak-proof lid" in copy["body"]
    assert "#AuroraBottle" in copy["hashtags"]
    assert "#WaterBottle" in copy["hashtags"]
    assert "lorem" not in str(copy).lower()


def test_different_products_get_different_copy() -> None:
    bottle = generate_copy({**BOTTLE, "length": "short"})
    boots = generate_copy({**BOOTS, "tone": "professional"})

    assert "Trailblazer 2" in boots["body"]
    assert "waterproof leather boots with a grippy Vibram sole" in boots["body"]
    assert "#Trailblazer2" in boots["hashtags"]
    assert bottle["body"] != boots["body"]


def test_same_input_gives_the_same_copy() -> None:
    assert generate_copy(BOTTLE) == generate_copy(dict(reversed(list(BOTTLE.items()))))


@pytest.mark.parametrize(("length", "expected"), [("short", 1), ("medium", 3), ("long", 6)])
@pytest.mark.parametrize("tone", TONES)
def test_length_sets_the_number_of_body_sentences(tone: str, length: str, expected: int) -> None:
    for product in (BOTTLE, BOOTS, {"product_name": "Nimbus Pillow", "product_description": ""}):
        copy = generate_copy({**product, "tone": tone, "length": length})
        assert len(sentences(copy["body"])) == expected, copy["body"]


def test_longer_copy_has_more_words() -> None:
    counts = [generate_copy({**BOTTLE, "length": length})["word_count"]
              for length in ("short", "medium", "long")]
    assert counts == sorted(counts) and len(set(counts)) == 3


def test_tones_read_differently() -> None:
    by_tone = {tone: generate_copy({**BOTTLE, "tone": tone, "length": "long"}) for tone in TONES}

    assert len({copy["body"] for copy in by_tone.values()}) == len(TONES)
    assert len({copy["call_to_action"] for copy in by_tone.values()}) == len(TONES)
    # Punctuation and calls to action carry the tone as much as the words do.
    assert "!" not in by_tone["professional"]["body"] + by_tone["luxury"]["body"]
    assert by_tone["playful"]["body"].count("!") >= 3
    assert by_tone["bold"]["call_to_action"].isupper()
    assert "you" in by_tone["friendly"]["body"].lower()
    assert by_tone["luxury"]["hashtags"][-1] == "#Luxury"


def test_an_empty_description_still_gives_named_copy() -> None:
    copy = generate_copy({"product_name": "Nimbus Pillow", "product_description": "",
                          "tone": "luxury", "length": "medium"})

    assert "Nimbus Pillow" in copy["headline"] and "Nimbus Pillow" in copy["body"]
    assert copy["hashtags"] == ["#NimbusPillow", "#Luxury"]


def test_the_description_is_read_for_category_and_features() -> None:
    category, features = read_description(
        "Wireless earbuds with active noise cancelling. IPX4 sweat resistant; perfect for the gym. "
        "No cables needed. Our charging case holds three extra charges.", "Pulse Buds")

    assert category == "wireless earbuds"
    assert [(f.kind, f.text) for f in features] == [
        ("has", "active noise cancelling"),
        ("is", "IPX4 sweat resistant"),
        ("is", "perfect for the gym"),
        ("says", "No cables needed"),
        ("says", "Our charging case holds three extra charges"),
    ]


def test_unknown_tone_or_length_is_refused() -> None:
    with pytest.raises(ValueError, match="tone"):
        generate_copy({**BOTTLE, "tone": "sarcastic"})
    with pytest.raises(ValueError, match="length"):
        generate_copy({**BOTTLE, "length": "epic"})
