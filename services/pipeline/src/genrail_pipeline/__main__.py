from genrail_pipeline.main import run

run()
