"""genrail projector."""
