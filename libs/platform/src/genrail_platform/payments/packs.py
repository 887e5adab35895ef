"""Credit packs: what a user can buy, read from one configuration string.

A spec is a comma-separated list of `id:credits:amount_cents:currency[:name]`, e.g.
`starter:100:900:usd,pro:1000:7900:usd:Pro pack`. Amounts are in the currency's smallest
unit, as Stripe takes them (cents for usd, whole yen for jpy).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PACK_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
_CURRENCY = re.compile(r"[a-z]{3}")


@dataclass(frozen=True, slots=True)
class CreditPack:
    id: str
    credits: int
    amount_cents: int
    currency: str
    name: str

    def __post_init__(self) -> None:
        if not _PACK_ID.fullmatch(self.id):
            raise ValueError(
                f"credit pack id {self.id!r} must be 1-40 characters of a-z, 0-9, '_' or '-', "
                "starting with a letter or digit"
            )
        if self.credits <= 0:
            raise ValueError(f"credit pack {self.id!r}: credits must be positive, got {self.credits}")
        if self.amount_cents <= 0:
            raise ValueError(
                f"credit pack {self.id!r}: amount_cents must be positive, got {self.amount_cents}"
            )
        if not _CURRENCY.fullmatch(self.currency):
            raise ValueError(
                f"credit pack {self.id!r}: currency must be a lowercase ISO 4217 code such as 'usd', "
                f"got {self.currency!r}"
            )
        if not self.name.strip():
            raise ValueError(f"credit pack {self.id!r}: name must not be blank")


def parse_packs(spec: str) -> dict[str, CreditPack]:
    """Parse a pack spec into packs by id; an empty spec means no packs are on sale."""
    if not spec.strip():
        return {}
    packs: dict[str, CreditPack] = {}
    for position, entry in enumerate(spec.split(","), start=1):
        pack = _parse_entry(entry.strip(), position)
        if pack.id in packs:
            raise ValueError(f"credit pack {pack.id!r} is defined twice")
        packs[pack.id] = pack
    return packs


def _parse_entry(entry: str, position: int) -> CreditPack:
    if not entry:
        raise ValueError(f"credit pack #{position} is empty (stray comma?)")
    fields = entry.split(":", 4)
    if len(fields) < 4:
        raise ValueError(
            f"credit pack #{position} {entry!r} must be id:credits:amount_cents:currency[:name]"
        )
    pack_id, credits_text, amount_text, currency = (field.strip() for field in fields[:4])
    credits = _int(credits_text, "credits", entry)
    return CreditPack(
        id=pack_id,
        credits=credits,
        amount_cents=_int(amount_text, "amount_cents", entry),
        currency=currency.lower(),
        name=fields[4].strip() if len(fields) == 5 else f"{credits} credits ({pack_id} pack)",
    )


def _int(text: str, field: str, entry: str) -> int:
    if not text.isdecimal():
        raise ValueError(f"credit pack {entry!r}: {field} must be a whole number, got {text!r}")
    return int(text)
