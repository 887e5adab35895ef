"""`scrape` against a real HTTP server on 127.0.0.1: redirects, limits, errors and refusals."""

from __future__ import annotations

import asyncio
import gzip
import socket
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse,
                                 Response, StreamingResponse)
from starlette.routing import Route

from genrail_pipeline.clients.errors import ProviderError
from genrail_pipeline.clients.scrape import ScrapeRefused, scrape
from tests.servers import serve_in_thread

PRODUCT_PAGE = """<!doctype html><html><head>
<meta charset="windows-1252">
<title>Crème brûlée torch – Atelier</title>
<meta property="og:site_name" content="Atelier">
<meta property="og:image" content="/img/torch.jpg">
<script type="application/ld+json">{"@type": "Product", "name": "Crème brûlée torch",
  "offers": {"@type": "Offer", "price": "39.00", "priceCurrency": "EUR"}}</script>
</head><body><h1>Crème brûlée torch</h1><img src="img/torch-side.jpg"></body></html>"""


async def product(request: Request) -> Response:
    # No charset in the header: the page's own <meta charset> has to be honoured.
    return Response(PRODUCT_PAGE.encode("windows-1252"), media_type="text/html")


async def hop(request: Request) -> Response:
    remaining = int(request.path_params["remaining"])
    return RedirectResponse("/product" if remaining == 0 else f"/hop/{remaining - 1}", status_code=302)


async def to_ftp(request: Request) -> Response:
    return RedirectResponse("ftp://127.0.0.1/product.html", status_code=301)


async def missing(request: Request) -> Response:
    return HTMLResponse("<h1>Not here</h1>", status_code=404)


async def unavailable(request: Request) -> Response:
    return HTMLResponse("<h1>Down for maintenance</h1>", status_code=503, headers={"Retry-After": "7"})


async def slow(request: Request) -> Response:
    await asyncio.sleep(1.5)
    return HTMLResponse("<title>Too late</title>")


async def drip(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        yield b"<html><head><title>Drip"
        for _ in range(50):
            await asyncio.sleep(0.05)
            yield b"."
    return StreamingResponse(body(), media_type="text/html")


async def big(request: Request) -> Response:
    async def body() -> AsyncIterator[bytes]:
        yield b"<html><body>"
        for _ in range(64):
            yield b"<p>" + b"x" * 16_384 + b"</p>"
    return StreamingResponse(body(), media_type="text/html")


async def gzip_bomb(request: Request) -> Response:
    # About 5 kB on the wire, 5 MB once decoded.
    return Response(gzip.compress(b"<html>" + b" " * 5_000_000), media_type="text/html",
                    headers={"Content-Encoding": "gzip"})


async def data(request: Request) -> Response:
    return JSONResponse({"price": 10})


async def plain(request: Request) -> Response:
    return PlainTextResponse("not a page")


APP = Starlette(routes=[
    Route("/product", product), Route("/hop/{remaining:int}", hop), Route("/to-ftp", to_ftp),
    Route("/missing", missing), Route("/unavailable", unavailable), Route("/slow", slow),
    Route("/drip", drip), Route("/big", big), Route("/bomb", gzip_bomb), Route("/data.json", data),
    Route("/notes.txt", plain),
])


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """The app above in uvicorn, on a free loopback port, in a background thread."""
    with serve_in_thread(APP) as url:
        yield url



async def test_a_product_page(site: str, http: httpx.AsyncClient) -> None:
    result = await scrape(f"{site}/product", http)

    assert result["url"] == result["final_url"] == f"{site}/product"
    assert result["status_code"] == 200
    assert result["title"] == "Crème brûlée torch – Atelier"
    assert (result["price"], result["currency"]) == ("39.00", "EUR")
    assert result["images"] == [f"{site}/img/torch.jpg", f"{site}/img/torch-side.jpg"]
    assert result["site_name"] == "Atelier"


async def test_a_redirect_chain_is_followed(site: str, http: httpx.AsyncClient) -> None:
    result = await scrape(f"{site}/hop/4", http)

    assert result["url"] == f"{site}/hop/4"
    assert result["final_url"] == f"{site}/product"
    assert result["title"] == "Crème brûlée torch – Atelier"


async def test_too_many_redirects_is_permanent(site: str, http: httpx.AsyncClient) -> None:
    with pytest.raises(ProviderError, match="redirects") as caught:
        await scrape(f"{site}/hop/5", http)
    assert caught.value.transient is False


async def test_a_redirect_to_another_scheme_is_refused(site: str, http: httpx.AsyncClient) -> None:
    with pytest.raises(ScrapeRefused, match="ftp"):
        await scrape(f"{site}/to-ftp", http)


async def test_404_is_permanent(site: str, http: httpx.AsyncClient) -> None:
    with pytest.raises(ProviderError, match="404") as caught:
        await scrape(f"{site}/missing", http)
    assert (caught.value.transient, caught.value.status_code) == (False, 404)


async def test_503_is_transient(site: str, http: httpx.AsyncClient) -> None:
    with pytest.raises(ProviderError, match="503") as caught:
        await scrape(f"{site}/unavailable", http)
    assert (caught.value.transient, caught.value.status_code) == (True, 503)
    assert caught.value.retry_after_s == 7


async def test_a_slow_server_times_out_as_transient(site: str, http: httpx.AsyncClient) -> None:
    started = time.monotonic()
    with pytest.raises(ProviderError, match="longer than") as caught:
        await scrape(f"{site}/slow", http, timeout_s=0.3)
    assert caught.value.transient is True
    assert time.monotonic() - started < 1.2


async def test_a_trickling_body_hits_the_overall_deadline(site: str, http: httpx.AsyncClient) -> None:
    # Every read succeeds well within the timeout; only the whole scrape is too slow.
    started = time.monotonic()
    with pytest.raises(ProviderError, match="longer than") as caught:
        await scrape(f"{site}/drip", http, timeout_s=0.5)
    assert caught.value.transient is True
    assert time.monotonic() - started < 1.5


async def test_an_oversized_body_is_permanent(site: str, http: httpx.AsyncClient) -> None:
    with pytest.raises(ProviderError, match="100000-byte limit") as caught:
        await scrape(f"{site}/big", http, max_bytes=100_000)
    assert caught.value.transient is False


async def test_the_limit_counts_decoded_bytes(site: str, http: httpx.AsyncClient) -> None:
    with pytest.raises(ProviderError, match="byte limit") as caught:
        await scrape(f"{site}/bomb", http, max_bytes=1_000_000)
    assert caught.value.transient is False


@pytest.mark.parametrize("path", ["/data.json", "/notes.txt"])
async def test_non_html_is_permanent(site: str, http: httpx.AsyncClient, path: str) -> None:
    with pytest.raises(ProviderError, match="not an HTML page") as caught:
        await scrape(f"{site}{path}", http)
    assert caught.value.transient is False


async def test_connection_refused_is_transient(http: httpx.AsyncClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    with pytest.raises(ProviderError, match="could not fetch") as caught:
        await scrape(f"http://127.0.0.1:{closed_port}/", http)
    assert caught.value.transient is True


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/product.html", "file:///etc/passwd",
                                 "javascript:alert(1)", "http:///no-host"])
async def test_other_schemes_are_refused(http: httpx.AsyncClient, url: str) -> None:
    with pytest.raises(ScrapeRefused) as caught:
        await scrape(url, http)
    assert caught.value.transient is False
    assert isinstance(caught.value, ValueError)
