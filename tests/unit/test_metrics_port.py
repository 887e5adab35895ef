"""With METRICS_PORT set, the HTTP services keep /metrics off their public port (the process
serves it on that port alone); unset, /metrics is on the public port, as under genrail up."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from genrail_api.main import create_app as api_app
from genrail_api.settings import ApiSettings
from genrail_webhooks.main import create_app as webhooks_app
from genrail_webhooks.settings import WebhooksSettings


@pytest.mark.parametrize(("make", "settings"), [(api_app, ApiSettings), (webhooks_app, WebhooksSettings)])
def test_metrics_leave_the_public_port_when_they_have_their_own(make, settings) -> None:
    public = TestClient(make(settings(metrics_port=0)))  # no lifespan: nothing connects
    private = TestClient(make(settings(metrics_port=9464)))
    assert public.get("/metrics").status_code == 200
    assert private.get("/metrics").status_code == 404
