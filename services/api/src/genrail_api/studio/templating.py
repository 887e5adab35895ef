"""Render a studio page: the Jinja2 environment over `templates/`, and the context every page gets."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

environment = Environment(loader=FileSystemLoader(TEMPLATES_DIR),
                          autoescape=select_autoescape(default=True, default_for_string=True),
                          trim_blocks=True, lstrip_blocks=True)


def _when(value: datetime | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


environment.filters["when"] = _when


async def page_context(request: Request) -> dict:
    from ..accounts import sessions  # which imports this module (its message page)

    user_id = await sessions.optional_page_user(request)
    admin = user_id is not None and await sessions.is_admin(request, user_id)
    return {"request": request, "user_id": user_id, "csrf_token": sessions.csrf_token(request), "is_admin": admin}


async def render(request: Request, template_name: str, context: dict, status_code: int = 200) -> HTMLResponse:
    full = await page_context(request)
    full.update(context)
    html = environment.get_template(template_name).render(full)
    return HTMLResponse(html, status_code=status_code)
