"""NATS_URL names one server or a cluster's servers, comma-separated (as deploy/compose.yaml
writes it): a process connects through whichever of them answers."""

from __future__ import annotations

import pytest

from genrail_cli.embedded import free_port
from genrail_eventlog.store import connect, open_log, server_urls


def test_a_comma_separated_list_is_every_server_and_blanks_are_ignored():
    assert server_urls("nats://a:4222, nats://b:4222,,nats://c:4222 ") == [
        "nats://a:4222", "nats://b:4222", "nats://c:4222"]
    with pytest.raises(ValueError, match="NATS_URL is empty"):
        server_urls(" , ")


async def test_a_list_whose_first_server_is_down_still_connects(nats_server):
    down = f"nats://127.0.0.1:{free_port()}"
    nc = await connect(f"{down},{nats_server.url}", "tests-url-list")
    try:
        assert nc.is_connected and nc.connected_url.port == nats_server.port
    finally:
        await nc.close()
    async with open_log(f"{down}, {nats_server.url}", "tests-url-list") as store:
        assert await store.js.account_info()
