from genrail_api.projector.main import run

run()
