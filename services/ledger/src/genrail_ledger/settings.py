from __future__ import annotations

from pydantic import Field

from genrail_platform.settings import CommonSettings


class LedgerSettings(CommonSettings):
    signup_credits: int = Field(10, description="Credits granted to every new user")
    ledger_max_deliver: int = Field(20, description="Deliveries of a ledger policy message before the DLQ")
