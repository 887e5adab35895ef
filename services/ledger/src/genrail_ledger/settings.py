from __future__ import annotations

from pydantic import Field

from genrail_runtime.settings import CommonSettings


class LedgerSettings(CommonSettings):
    signup_credits: int = Field(10, description="Credits granted to every new user")
    ledger_recovery_grace_s: float = Field(5.0, description="Age of a debit before the ledger checks that its "
                                                             "job or batch was created (API crash recovery)")
    ledger_max_deliver: int = Field(20, description="Deliveries of a ledger policy message before the DLQ")
