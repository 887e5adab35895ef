from genrail_localprovider.main import run

run()
