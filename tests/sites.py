"""A small shop website the scrape tests point jobs at, served on loopback by uvicorn."""

from __future__ import annotations

import asyncio
import io
import threading
import time

import uvicorn
from PIL import Image, ImageDraw
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from genrail_cli.embedded import free_port

PRODUCT_PAGE = """<!doctype html><html><head>
<title>Trailblazer 2 Hiking Boots | Summit Outfitters</title>
<meta name="description" content="Waterproof leather hiking boots with a Vibram sole.">
<meta property="og:title" content="Trailblazer 2 Hiking Boots">
<meta property="og:image" content="/img/boots.jpg">
<meta property="og:site_name" content="Summit Outfitters">
<script type="application/ld+json">{"@context":"https://schema.org","@type":"Product","name":"Trailblazer 2",
"offers":{"@type":"Offer","price":"149.00","priceCurrency":"USD"}}</script>
</head><body><h1>Trailblazer 2</h1><img src="/img/side.jpg"></body></html>"""


# The test stack's fetches may reach this loopback address (FETCH_ALLOW in tests/conftest.py)
# and no other: it stands in for the public internet, while 127.0.0.1 (where the stack's own
# services listen) stays as unreachable as any internal address.
PUBLIC_STAND_IN = "127.0.0.2"


class ShopSite:
    """`/product` is a product page; `/down` always answers 503; `/slow?s=N` takes N seconds;
    `/flaky/<name>` answers 503 while `<name>` is in `failing`, else the product page."""

    def __init__(self) -> None:
        self.port = free_port()
        self.hits: dict[str, int] = {}
        self.failing: set[str] = set()

        async def product(request: Request) -> HTMLResponse:
            self._hit("product")
            return HTMLResponse(PRODUCT_PAGE)

        async def image(request: Request) -> Response:
            self._hit("image")
            picture = Image.new("RGB", (320, 240), (30, 90, 160))
            ImageDraw.Draw(picture).ellipse((100, 60, 220, 180), fill=(240, 200, 40))
            out = io.BytesIO()
            picture.save(out, format="PNG")
            return Response(out.getvalue(), media_type="image/png")

        async def down(request: Request) -> PlainTextResponse:
            self._hit("down")
            return PlainTextResponse("maintenance", status_code=503)

        async def slow(request: Request) -> HTMLResponse:
            self._hit("slow")
            await asyncio.sleep(float(request.query_params.get("s", "5")))
            return HTMLResponse(PRODUCT_PAGE)

        async def flaky(request: Request) -> HTMLResponse | PlainTextResponse:
            name = request.path_params["name"]
            self._hit(f"flaky/{name}")
            if name in self.failing:
                return PlainTextResponse("temporarily unavailable", status_code=503)
            return HTMLResponse(PRODUCT_PAGE)

        app = Starlette(routes=[Route("/product", product), Route("/img/product.png", image), Route("/down", down),
                                Route("/slow", slow), Route("/flaky/{name}", flaky)])
        self.server = uvicorn.Server(uvicorn.Config(app, host=PUBLIC_STAND_IN, port=self.port, log_level="warning"))

    def _hit(self, name: str) -> None:
        self.hits[name] = self.hits.get(name, 0) + 1

    def url(self, path: str) -> str:
        return f"http://{PUBLIC_STAND_IN}:{self.port}{path}"

    def start(self) -> ShopSite:
        threading.Thread(target=self.server.run, daemon=True).start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
