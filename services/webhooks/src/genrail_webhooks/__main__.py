from genrail_webhooks.main import run

run()
