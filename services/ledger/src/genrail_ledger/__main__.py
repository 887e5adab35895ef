from genrail_ledger.main import run

run()
