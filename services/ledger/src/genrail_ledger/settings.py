from __future__ import annotations

from typing import Literal

from pydantic import Field

from genrail_events import subjects
from genrail_runtime.settings import CommonSettings


class LedgerSettings(CommonSettings):
    signup_credits: int = Field(10, description="Credits granted to every new user")
    signup_credits_on: Literal["registration", "verified_email"] = Field(
        "registration", description="When they are granted: at registration (POST /v1/users, which proves no "
                                    "email), or at the first sign-in by emailed link or OAuth, which proves it")
    ledger_recovery_grace_s: float = Field(5.0, description="Age of a debit before the ledger checks that its "
                                                             "job or batch was created (API crash recovery)")
    ledger_max_deliver: int = Field(20, description="Deliveries of a ledger policy message before the DLQ")

    def signup_credits_subject(self) -> str:
        return subjects.USER_REGISTERED_ALL if self.signup_credits_on == "registration" else "user.signed_in.*"
