"""genrail-storage."""
