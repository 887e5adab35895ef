from genrail_projector.main import run

run()
