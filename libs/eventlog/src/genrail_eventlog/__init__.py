"""genrail-eventlog."""
