"""`genrail up`'s secrets are its data directory's own: random, kept across restarts, and
completed when an older data directory lacks one (the Stripe webhook secret was once a
value in the source, which anyone could have signed forged payments with)."""

from __future__ import annotations

import json

from genrail_cli.stack import Stack


def test_secrets_are_made_once_per_data_directory_and_kept(tmp_path) -> None:
    first = Stack(data_dir=tmp_path / "a").local_secrets()
    assert set(first) == {"replicate_webhook", "stripe_webhook", "media_url", "outgoing_webhooks", "session"}
    assert first["stripe_webhook"].startswith("whsec_") and "genrail_local" not in first["stripe_webhook"]
    assert Stack(data_dir=tmp_path / "a").local_secrets() == first
    assert Stack(data_dir=tmp_path / "b").local_secrets()["stripe_webhook"] != first["stripe_webhook"]
    assert oct((tmp_path / "a" / "secrets.json").stat().st_mode & 0o777) == "0o600"


def test_an_older_data_directory_gets_the_secret_it_lacks_and_keeps_the_others(tmp_path) -> None:
    tmp_path.joinpath("secrets.json").write_text(json.dumps({"replicate_webhook": "whsec_old", "media_url": "m"}))
    secrets = Stack(data_dir=tmp_path).local_secrets()
    assert (secrets["replicate_webhook"], secrets["media_url"]) == ("whsec_old", "m")
    assert secrets["stripe_webhook"].startswith("whsec_")
