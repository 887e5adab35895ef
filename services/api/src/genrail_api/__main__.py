from genrail_api.main import run

run()
