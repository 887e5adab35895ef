"""genrail-copywriter."""
