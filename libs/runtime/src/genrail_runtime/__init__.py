"""genrail-runtime."""
