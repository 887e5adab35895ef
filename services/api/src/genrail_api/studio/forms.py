"""The studio's job forms: which fields each job type asks for, and the API request they make."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from genrail_events.jobs import JobType

from ..schemas import CopyRequest, Notified, ScrapeRequest, StaticAdRequest, TtsRequest, UgcVideoRequest


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    kind: str = "text"  # text, textarea, url, number, select
    required: bool = False
    choices: tuple[str, ...] = ()
    default: str = ""
    hint: str = ""


@dataclass(frozen=True)
class JobForm:
    type: JobType
    slug: str
    title: str
    request: type[Notified]
    fields: tuple[Field, ...]


STYLES = ("bold", "minimal", "vibrant")
FORMS = (
    JobForm(JobType.copy, "copy", "Ad copy", CopyRequest, (
        Field("product_name", "Product name", required=True),
        Field("product_description", "Product description", "textarea"),
        Field("tone", "Tone", "select", choices=("professional", "playful", "bold", "luxury", "friendly")),
        Field("length", "Length", "select", choices=("short", "medium", "long"), default="medium"))),
    JobForm(JobType.scrape, "scrape", "Scrape a product page", ScrapeRequest, (
        Field("url", "Product page URL", "url", required=True),)),
    JobForm(JobType.static_ad, "static-ad", "Static ad image", StaticAdRequest, (
        Field("headline", "Headline", required=True),
        Field("cta", "Call to action"),
        Field("style", "Style", "select", choices=STYLES),
        Field("brand_colors", "Brand colours", hint="Up to three, like #1d4ed8, separated by commas"),
        Field("width", "Width (px)", "number", default="1080"),
        Field("height", "Height (px)", "number", default="1080"),
        Field("product_image_url", "Product image URL", "url"))),
    JobForm(JobType.ugc_video, "ugc-video", "UGC video", UgcVideoRequest, (
        Field("script", "Script", "textarea", required=True),
        Field("style", "Style", "select", choices=STYLES, default="vibrant"),
        Field("duration_s", "Duration (seconds, 1 to 8)", "number", default="3"),
        Field("product_image_url", "Product image URL", "url"))),
    JobForm(JobType.tts, "tts", "Text to speech", TtsRequest, (
        Field("text", "Text", "textarea", required=True),
        Field("voice", "Voice", default="default"),
        Field("duration_s", "Duration (seconds, optional)", "number"))),
)
BY_SLUG = {form.slug: form for form in FORMS}


def request_body(form: JobForm, values: dict[str, str]) -> dict[str, Any]:
    """The JSON body POST /v1/generate/<type> would get from these form values: empty optional
    fields left out, so the request's defaults apply. Validated by `form.request`."""
    body: dict[str, Any] = {}
    for field in form.fields:
        value = values.get(field.name, "").strip()
        if not value and not field.required:
            continue
        if field.name == "brand_colors":
            body[field.name] = [c.strip() for c in value.split(",") if c.strip()]
        else:
            body[field.name] = value
    return body
