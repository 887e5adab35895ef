from __future__ import annotations

from pydantic import Field

from genrail_events import subjects
from genrail_runtime.settings import CommonSettings, SignupSettings


class LedgerSettings(CommonSettings, SignupSettings):
    ledger_recovery_grace_s: float = Field(5.0, description="Age of a debit before the ledger checks that its "
                                                             "job or batch was created (API crash recovery)")
    ledger_max_deliver: int = Field(20, description="Deliveries of a ledger policy message before the DLQ")

    def signup_credits_subject(self) -> str:
        return subjects.USER_REGISTERED_ALL if self.signup_credits_on == "registration" else "user.signed_in.*"
