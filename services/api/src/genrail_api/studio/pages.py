"""Every router of the studio's pages, for the app to include."""

from __future__ import annotations

from fastapi import APIRouter


def routers() -> list[APIRouter]:
    from . import admin_pages, batch_pages, credit_pages, dashboard, job_pages, key_pages

    return [dashboard.router, job_pages.router, batch_pages.router, credit_pages.router, key_pages.router,
            admin_pages.router]
