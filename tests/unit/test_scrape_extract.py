"""Reading a product page: `extract_product` is a pure function of the HTML and its URL."""

from __future__ import annotations

from genrail_pipeline.clients.scrape import MAX_IMAGES, extract_product

BASE = "https://shop.example.com/products/aurora-bottle?variant=7"

FULL_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Aurora Bottle – Northwind Outfitters</title>
  <meta name="description" content="Plain meta description.">
  <meta property="og:title" content="Aurora Insulated Bottle">
  <meta property="og:description" content="  Keeps drinks cold for 24 hours
      and hot for 12. ">
  <meta property="og:type" content="product">
  <meta property="og:url" content="https://shop.example.com/products/aurora-bottle">
  <meta property="og:site_name" content="Northwind Outfitters">
  <meta property="og:image" content="https://cdn.example.com/aurora-front.jpg">
  <meta property="og:image" content="/media/aurora-side.jpg">
  <meta property="product:price:amount" content="99.00">
  <meta property="product:price:currency" content="EUR">
  <link rel="canonical" href="/products/aurora-bottle">
  <script type="application/ld+json">
  {
    "@context": "https://schema.org/",
    "@type": "Product",
    "name": "Aurora Bottle",
    "image": ["https://cdn.example.com/aurora-front.jpg", {"@type": "ImageObject", "url": "/media/lid.jpg"}],
    "offers": {"@type": "Offer", "price": 34.90, "priceCurrency": "USD",
               "availability": "https://schema.org/InStock"}
  }
  </script>
</head>
<body>
  <h1>Aurora Bottle</h1>
  <img src="../media/thumb-1.jpg" alt="">
  <img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" data-src="/media/lazy.jpg">
  <img src="https://cdn.example.com/aurora-front.jpg">
  <img src="javascript:void(0)">
  <img>
</body>
</html>"""


def test_a_full_product_page() -> None:
    product = extract_product(FULL_PAGE, BASE)

    assert product["title"] == "Aurora Insulated Bottle"
    assert product["description"] == "Keeps drinks cold for 24 hours and hot for 12."
    # JSON-LD wins over the meta tags, and the price stays as written.
    assert (product["price"], product["currency"]) == ("34.90", "USD")
    assert product["images"] == [
        "https://cdn.example.com/aurora-front.jpg",
        "https://shop.example.com/media/aurora-side.jpg",
        "https://shop.example.com/media/lid.jpg",
        "https://shop.example.com/media/thumb-1.jpg",
        "https://shop.example.com/media/lazy.jpg",
    ]
    assert product["open_graph"] == {
        "og:title": "Aurora Insulated Bottle",
        "og:description": "Keeps drinks cold for 24 hours\n      and hot for 12.",
        "og:type": "product",
        "og:url": "https://shop.example.com/products/aurora-bottle",
        "og:site_name": "Northwind Outfitters",
        "og:image": "https://cdn.example.com/aurora-front.jpg",
    }
    assert product["canonical_url"] == "https://shop.example.com/products/aurora-bottle"
    assert product["site_name"] == "Northwind Outfitters"


def test_open_graph_price_when_there_is_no_json_ld() -> None:
    page = FULL_PAGE.split('<script type="application/ld+json">')[0] + "</head><body></body></html>"
    product = extract_product(page, BASE)

    assert (product["price"], product["currency"]) == ("99.00", "EUR")


MICRODATA_PAGE = """<html><head><title>Field Notes Journal | Paper Co.</title></head>
<body>
  <div itemscope itemtype="https://schema.org/Product">
    <h1 itemprop="name">Field Notes Journal</h1>
    <img itemprop="image" src="/img/journal.png">
    <div itemprop="offers" itemscope itemtype="https://schema.org/Offer">
      <span itemprop="price">$12.50</span>
      <meta itemprop="priceCurrency" content="USD">
    </div>
  </div>
</body></html>"""


def test_a_page_with_only_microdata() -> None:
    product = extract_product(MICRODATA_PAGE, "http://paper.example/journal")

    assert product["title"] == "Field Notes Journal | Paper Co."
    assert (product["price"], product["currency"]) == ("12.50", "USD")
    assert product["images"] == ["http://paper.example/img/journal.png"]
    assert product["description"] is None
    assert product["open_graph"] == {}


def test_microdata_price_in_a_content_attribute() -> None:
    page = ('<span itemprop="price" content="1499.00">€1.499,00</span>'
            '<span itemprop="priceCurrency">EUR</span>')

    assert extract_product(page, BASE)["price"] == "1499.00"
    assert extract_product(page, BASE)["currency"] == "EUR"


def test_a_page_with_nothing_but_a_title() -> None:
    product = extract_product("<title>  Just a\n title </title>", BASE)

    assert product == {
        "title": "Just a title", "description": None, "price": None, "currency": None,
        "images": [], "open_graph": {}, "canonical_url": None, "site_name": None,
    }


def test_h1_is_the_last_resort_for_a_title() -> None:
    assert extract_product("<body><h1>Only <em>a</em> heading</h1></body>", BASE)["title"] == "Only a heading"


GRAPH_PAGE = """<html><head>
<script type="application/ld+json">not json at all</script>
<script type="application/ld+json">
{"@context": "https://schema.org", "@graph": [
  {"@type": "WebSite", "name": "Loom & Thread", "url": "https://loom.example/"},
  {"@type": "WebPage", "@id": "https://loom.example/p/throw#webpage",
   "mainEntity": {"@type": ["Product", "IndividualProduct"], "name": "Merino Throw",
                  "description": "A heavy merino wool throw.",
                  "image": {"@type": "ImageObject", "contentUrl": "https://cdn.loom.example/throw.jpg"},
                  "offers": [
                    {"@type": "AggregateOffer", "lowPrice": "129", "priceCurrency": "GBP"},
                    {"@type": "Offer", "price": "149", "priceCurrency": "GBP"}]}}
]}
</script></head><body><h1>Merino Throw</h1></body></html>"""


def test_json_ld_in_a_graph_with_offer_lists() -> None:
    product = extract_product(GRAPH_PAGE, "https://loom.example/p/throw")

    assert product["title"] == "Merino Throw"
    assert product["description"] == "A heavy merino wool throw."
    assert (product["price"], product["currency"]) == ("129", "GBP")
    assert product["images"] == ["https://cdn.loom.example/throw.jpg"]


def test_price_specification_inside_an_offer() -> None:
    page = """<script type="application/ld+json">[{"@type": "Product", "name": "Kettle",
      "offers": {"@type": "Offer", "priceSpecification": [
        {"@type": "UnitPriceSpecification", "price": 59.5, "priceCurrency": "CHF"}]}}]</script>"""

    product = extract_product(page, BASE)
    assert (product["price"], product["currency"]) == ("59.5", "CHF")


def test_images_are_capped_and_base_href_is_honoured() -> None:
    imgs = "".join(f'<img src="img/{i % 30}.jpg">' for i in range(60))
    page = f'<html><head><base href="https://static.example.org/shop/"></head><body>{imgs}</body></html>'

    images = extract_product(page, BASE)["images"]
    assert len(images) == MAX_IMAGES
    assert images[0] == "https://static.example.org/shop/img/0.jpg"
    assert len(set(images)) == MAX_IMAGES


def test_json_ld_types_may_be_prefixed_or_full_urls() -> None:
    page = """<script type="application/ld+json">{"@type": "https://schema.org/Product",
      "offers": {"@type": "schema:Offer", "price": "5", "priceCurrency": "JPY"}}</script>"""

    assert extract_product(page, BASE)["price"] == "5"
