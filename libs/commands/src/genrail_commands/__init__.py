"""genrail-commands."""
