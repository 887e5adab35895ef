"""genrail-readmodels."""
