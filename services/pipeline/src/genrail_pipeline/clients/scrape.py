"""The `scrape` job type: fetch a product page and read what a shop would want from it.

Fetching (`scrape`) and reading (`extract_product`) are separate, so the reading is a pure
function of the HTML and its URL. The fetch is defensive: http(s) only, on every redirect
hop too; through the guarded client the pipeline gives it, public addresses only; a byte budget on the decoded body (so a small gzip bomb cannot fill memory); an
overall deadline; HTML only.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import deque
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from bs4 import BeautifulSoup, Tag
from bs4.dammit import UnicodeDammit

from genrail_pipeline.clients.errors import ProviderError, retry_after_seconds
from genrail_runtime.guarded_http import AddressNotAllowed

MAX_REDIRECTS = 5
MAX_IMAGES = 20
HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_ALLOWED_SCHEMES = frozenset({"http", "https"})


class ScrapeRefused(ProviderError, ValueError):
    """The URL is not one we fetch (not http or https, or no host). Never worth retrying."""

    def __init__(self, message: str):
        super().__init__(message, transient=False)


async def scrape(url: str, http: httpx.AsyncClient, *, max_bytes: int = 2_000_000,
                 timeout_s: float = 10.0, user_agent: str = "genrail-scraper/0.1") -> dict[str, Any]:
    """Fetch `url` and extract the product on it: the `scrape` job output.

    `timeout_s` bounds the whole scrape, redirects included. Raises `ScrapeRefused` for URLs
    we do not fetch and `ProviderError` (transient for timeouts, connection trouble, 408,
    429 and 5xx) for everything else that goes wrong.
    """
    _check_url(url)
    try:
        async with asyncio.timeout(timeout_s):
            final_url, status, html = await _fetch(url, http, max_bytes=max_bytes,
                                                   timeout_s=timeout_s, user_agent=user_agent)
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise ProviderError(f"fetching {url} took longer than {timeout_s:g}s", transient=True) from exc
    except AddressNotAllowed as exc:  # decided before connecting: says nothing of what listens there
        raise ScrapeRefused(f"not fetched: {exc}") from exc
    except httpx.LocalProtocolError as exc:  # our request is malformed: no retry will send it
        raise ProviderError(f"could not send a request for {url}: {exc}", transient=False) from exc
    except httpx.TransportError as exc:
        raise ProviderError(f"could not fetch {url}: {exc!r}", transient=True) from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:  # undecodable body, unusable Location
        raise ProviderError(f"could not read {url}: {exc}", transient=False) from exc
    return {"url": url, "final_url": final_url, "status_code": status,
            **extract_product(html, final_url)}


async def _fetch(url: str, http: httpx.AsyncClient, *, max_bytes: int, timeout_s: float,
                 user_agent: str) -> tuple[str, int, str]:
    headers = {"User-Agent": user_agent,
               "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1"}
    for _hop in range(MAX_REDIRECTS + 1):
        request = http.build_request("GET", url, headers=headers, timeout=timeout_s)
        # Redirects are followed by hand so that every hop's scheme is checked first.
        response = await http.send(request, stream=True, follow_redirects=False)
        try:
            if response.has_redirect_location:
                url = str(response.url.join(response.headers["location"]))
                _check_url(url)
                continue
            _check_response(response, max_bytes)
            body = await _read_limited(response, max_bytes)
            return str(response.url), response.status_code, _decode(body, response.charset_encoding)
        finally:
            await response.aclose()
    raise ProviderError(f"more than {MAX_REDIRECTS} redirects, last to {url}", transient=False)


def _check_url(url: str) -> None:
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ScrapeRefused(f"not a valid URL: {url!r}") from exc
    if parts.scheme.lower() not in _ALLOWED_SCHEMES:
        raise ScrapeRefused(f"only http and https URLs are scraped: {url}")
    if not parts.hostname:
        raise ScrapeRefused(f"URL has no host: {url}")


def _check_response(response: httpx.Response, max_bytes: int) -> None:
    status = response.status_code
    if status >= 500 or status in (408, 429):
        raise ProviderError(f"{response.url} answered {status} {response.reason_phrase}",
                            transient=True, status_code=status,
                            retry_after_s=retry_after_seconds(response.headers))
    if status >= 400:
        raise ProviderError(f"{response.url} answered {status} {response.reason_phrase}",
                            transient=False, status_code=status)
    if status >= 300:
        raise ProviderError(f"{response.url} answered {status} {response.reason_phrase}, not a page",
                            transient=False, status_code=status)
    media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    # A missing Content-Type is let through: BeautifulSoup reads whatever it gets.
    if media_type and media_type not in HTML_TYPES:
        raise ProviderError(f"{response.url} is {media_type}, not an HTML page",
                            transient=False, status_code=status)
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ProviderError(f"{response.url} is {declared} bytes, over the {max_bytes}-byte limit",
                            transient=False, status_code=status)


async def _read_limited(response: httpx.Response, max_bytes: int) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise ProviderError(f"{response.url} is over the {max_bytes}-byte limit",
                                transient=False, status_code=response.status_code)
    return bytes(body)


def _decode(body: bytes, declared_charset: str | None) -> str:
    """Decode with the header's charset, else the page's <meta charset>, else a guess."""
    known = [declared_charset] if declared_charset else []
    markup = UnicodeDammit(body, known_definite_encodings=known, is_html=True).unicode_markup
    return markup if markup is not None else body.decode("utf-8", errors="replace")


def extract_product(html: str, base_url: str) -> dict[str, Any]:
    """What a product page says about its product.

    Returns title, description, price and currency (strings or None), images (absolute URLs,
    at most 20), open_graph (og:* properties), canonical_url and site_name.
    """
    soup = BeautifulSoup(html, "html.parser")
    base_tag = soup.find("base", href=True)
    if isinstance(base_tag, Tag):
        base_url = urljoin(base_url, str(base_tag["href"]).strip())

    meta = _meta_values(soup)
    open_graph = {key: values[0] for key, values in meta.items() if key.startswith("og:")}
    products = list(_json_ld_products(soup))
    price, currency = _price(products, meta, soup)

    canonical = soup.find("link", rel="canonical", href=True)
    canonical_url = _absolute(base_url, str(canonical["href"])) if isinstance(canonical, Tag) else None
    return {
        "title": _first_text(meta.get("og:title"), _tag_text(soup.title), _tag_text(soup.find("h1"))),
        "description": _first_text(meta.get("og:description"), meta.get("description"),
                                   *(p.get("description") for p in products)),
        "price": price,
        "currency": currency,
        "images": _images(soup, meta, products, base_url),
        "open_graph": open_graph,
        "canonical_url": canonical_url or _absolute(base_url, open_graph.get("og:url", "")),
        "site_name": _first_text(meta.get("og:site_name"), meta.get("application-name")),
    }


def _meta_values(soup: BeautifulSoup) -> dict[str, list[str]]:
    """`<meta property|name=K content=V>` as {lower-cased K: [V, ...]} in document order."""
    values: dict[str, list[str]] = {}
    for tag in soup.find_all("meta", content=True):
        key = tag.get("property") or tag.get("name")
        content = str(tag["content"]).strip()
        if key and content:
            values.setdefault(str(key).strip().lower(), []).append(content)
    return values


def _json_ld_products(soup: BeautifulSoup) -> Iterator[dict[str, Any]]:
    for script in soup.find_all("script", type=re.compile(r"^\s*application/ld\+json\s*$", re.I)):
        try:
            # Prices stay exactly as written: "19.90", not 19.9.
            data = json.loads(script.get_text(), parse_float=str, strict=False)
        except (json.JSONDecodeError, RecursionError):
            continue
        yield from _nodes_of_type(data, "Product")


def _nodes_of_type(data: Any, wanted: str) -> Iterator[dict[str, Any]]:
    """Every JSON-LD node of a type, wherever it sits: top level, lists, @graph, nesting.

    "Product", "schema:Product" and "https://schema.org/Product" all name the same type.
    """
    pending = deque([data])
    while pending:
        node = pending.popleft()
        if isinstance(node, list):
            pending.extendleft(reversed(node))
        elif isinstance(node, dict):
            types = node.get("@type")
            names = {re.split(r"[/:#]", t)[-1] for t in _as_list(types) if isinstance(t, str)}
            if wanted in names:
                yield node
            pending.extend(v for v in node.values() if isinstance(v, (dict, list)))


def _price(products: list[dict[str, Any]], meta: dict[str, list[str]],
           soup: BeautifulSoup) -> tuple[str | None, str | None]:
    for product in products:
        for offer in _as_list(product.get("offers")):
            if not isinstance(offer, dict):
                continue
            specs = [s for s in _as_list(offer.get("priceSpecification")) if isinstance(s, dict)]
            price = _first_text(offer.get("price"), offer.get("lowPrice"),
                                *(s.get("price") for s in specs))
            if price:
                return price, _first_text(offer.get("priceCurrency"),
                                          *(s.get("priceCurrency") for s in specs))
    for prefix in ("product:price:", "og:price:"):
        if price := _first_text(meta.get(prefix + "amount")):
            return price, _first_text(meta.get(prefix + "currency"))
    price_tag = soup.find(attrs={"itemprop": "price"})
    if isinstance(price_tag, Tag):
        raw = price_tag.get("content") or price_tag.get_text(" ", strip=True)
        number = re.search(r"\d[\d.,]*", str(raw))
        if number:
            currency_tag = soup.find(attrs={"itemprop": "priceCurrency"})
            currency = None
            if isinstance(currency_tag, Tag):
                currency = _first_text(currency_tag.get("content"),
                                       currency_tag.get_text(" ", strip=True))
            return number.group(0).rstrip(".,"), currency
    return None, None


def _images(soup: BeautifulSoup, meta: dict[str, list[str]], products: list[dict[str, Any]],
            base_url: str) -> list[str]:
    candidates: list[str] = []
    for key in ("og:image", "og:image:url", "og:image:secure_url"):
        candidates += meta.get(key, [])
    for product in products:
        for image in _as_list(product.get("image")):
            if isinstance(image, dict):
                image = image.get("url") or image.get("contentUrl")
            if isinstance(image, str):
                candidates.append(image)
    for img in soup.find_all("img"):
        src = str(img.get("src") or "").strip()
        if not src or src.startswith("data:"):
            src = str(img.get("data-src") or "").strip()
        candidates.append(src)

    images: list[str] = []
    for candidate in candidates:
        url = _absolute(base_url, candidate)
        if url and url not in images:
            images.append(url)
            if len(images) == MAX_IMAGES:
                break
    return images


def _absolute(base_url: str, link: str) -> str | None:
    """`link` resolved against the page, if it is an http(s) URL; data:, javascript: are not."""
    link = link.strip()
    if not link or link.lower().startswith("data:"):
        return None
    try:
        url = urljoin(base_url, link)
        return url if urlsplit(url).scheme in _ALLOWED_SCHEMES else None
    except ValueError:  # e.g. "http://[::1" is not a URL
        return None


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def _tag_text(tag: Any) -> str | None:
    return tag.get_text(" ", strip=True) if isinstance(tag, Tag) else None


def _first_text(*values: Any) -> str | None:
    """The first non-blank value, whitespace collapsed; lists count by their first item."""
    for value in values:
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and value.strip():
            return " ".join(value.split())
    return None
