"""genrail's domain: pure code, no I/O.

Events, subjects and streams are the contract between services; the job state machine
and the ledger deciders are the rules. Services load state from the log, call a decide
function, append what it returns with optimistic concurrency, and retry on conflict.
"""
