"""Who is signed in, for the studio's pages: the accounts package's sessions, as dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..accounts import sessions

PageUser = sessions.PageUser  # the signed-in user's id; anyone else is sent to /signin, and back after
Csrf = Depends(sessions.verify_csrf)  # every state-changing form POST


async def admin_user(request: Request, user_id: PageUser) -> str | None:
    """The signed-in user if an administrator, else None: the page then says it is not for them."""
    return user_id if await sessions.is_admin(request, user_id) else None


AdminUser = Annotated[str | None, Depends(admin_user)]
