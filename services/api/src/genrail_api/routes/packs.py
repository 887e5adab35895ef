"""What is on sale: the credit packs (CREDIT_PACKS), public, for a pricing page or a client."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from ..deps import SettingsDep

router = APIRouter(prefix="/packs", tags=["packs"])


class PackPublic(BaseModel):
    id: str = Field(examples=["starter"], description="Pass as `pack` to POST /v1/billing/checkout")
    name: str = Field(examples=["Starter"])
    credits: int = Field(examples=[100])
    amount_cents: int = Field(examples=[900], description="The price, in the currency's smallest unit")
    currency: str = Field(examples=["usd"])


@router.get("", response_model=list[PackPublic], summary="The credit packs on sale (no API key needed)")
async def list_packs(settings: SettingsDep) -> list[PackPublic]:
    return [PackPublic(id=p.id, name=p.name, credits=p.credits, amount_cents=p.amount_cents, currency=p.currency)
            for p in settings.packs.values()]
