import pytest

from genrail_events.payments import CreditPack, parse_packs


def test_parses_packs_by_id():
    packs = parse_packs("starter:100:900:usd, pro:1000:7900:USD:Pro pack")

    assert packs == {
        "starter": CreditPack("starter", 100, 900, "usd", "100 credits (starter pack)"),
        "pro": CreditPack("pro", 1000, 7900, "usd", "Pro pack"),
    }


def test_name_may_contain_colons():
    assert parse_packs("big:5000:30000:eur:Big: best value")["big"].name == "Big: best value"


@pytest.mark.parametrize("spec", ["", "   "])
def test_empty_spec_means_nothing_on_sale(spec):
    assert parse_packs(spec) == {}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("starter:100:900", "must be id:credits:amount_cents:currency"),
        ("starter:lots:900:usd", "credits must be a whole number, got 'lots'"),
        ("starter:100:9.00:usd", "amount_cents must be a whole number, got '9.00'"),
        ("starter:0:900:usd", "credits must be positive"),
        ("starter:100:0:usd", "amount_cents must be positive"),
        ("starter:100:900:dollars", "currency must be a lowercase ISO 4217 code"),
        ("Starter Pack:100:900:usd", "credit pack id 'Starter Pack'"),
        ("starter:100:900:usd,starter:200:1700:usd", "'starter' is defined twice"),
        ("starter:100:900:usd,,pro:1000:7900:usd", "credit pack #2 is empty"),
        ("starter:100:900:usd:  ", "name must not be blank"),
    ],
)
def test_rejects_bad_specs_saying_why(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_packs(spec)


def test_packs_built_directly_are_checked_too():
    with pytest.raises(ValueError, match="credits must be positive"):
        CreditPack("starter", -1, 900, "usd", "Starter")
